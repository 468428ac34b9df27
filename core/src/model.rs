//! The trainable part of furcate: an optional trainable tail of the backbone
//! (partial fine-tuning), an optional shared trunk (the thesis's `fc_layer`)
//! and one head per property, on the frozen extractor's features.
//!
//! ```text
//! features [N, D] ──► tail? ──► trunk? ──► head_1 … head_n      total loss = Σ weight_i · loss_i
//! ```
//!
//! The model's variables live in their own [`nn::VarStore`], never in the
//! extractor's: an optimiser built on that store trains the tail, the trunk and
//! the heads and cannot touch the frozen backbone. The tail sits under
//! `backbone.` (by [`crate::run::build_model_for`]'s convention), the trunk
//! under `trunk.` and each head under `heads.<name>.`, so checkpoints name
//! every variable by its part.
//!
//! ```
//! use furcate_core::head::classification::ClassificationConfig;
//! use furcate_core::head::regression::RegressionConfig;
//! use furcate_core::model::{MultiHeadModel, TrunkConfig};
//! use furcate_core::HeadConfig;
//! use tch::{nn, Device, Kind, Tensor};
//!
//! let morphology: Box<dyn HeadConfig> = Box::new(ClassificationConfig::new("morphology"));
//! let fraction: Box<dyn HeadConfig> = Box::new(RegressionConfig::new("fraction"));
//! let heads = vec![
//!     (morphology, serde_json::json!({ "classes": ["a", "b", "c"] })),
//!     (fraction, serde_json::json!({ "mean": 0.3, "std": 0.1 })),
//! ];
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = MultiHeadModel::new(&vs.root(), 8, Some(&TrunkConfig::default()), &heads)?;
//! let outputs = model.forward(&Tensor::randn([4, 8], (Kind::Float, Device::Cpu)), false)?;
//! assert_eq!(outputs[0].size(), [4, 3]);
//! assert_eq!(outputs[1].size(), [4, 1]);
//! assert!(vs.variables().contains_key("heads.morphology.out.weight"));
//! assert!(vs.variables().contains_key("trunk.0.weight"));
//! # Ok::<(), furcate_core::Error>(())
//! ```

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::extractor::taps::select_columns;
use crate::extractor::TrainableTail;
use crate::head::{HeadConfig, HeadState, Prediction, PropertyHead, Targets};
use crate::{Error, Result};

pub use crate::layers::{to_vec_f64, Activation, Mlp};

fn default_trunk_hidden() -> Vec<i64> {
    vec![100]
}

/// The `[trunk]` table: shared layers between the features and every head.
///
/// ```toml
/// [trunk]
/// hidden = [100]        # the thesis's fc_layer (the default)
/// activation = "relu"   # relu | gelu | tanh | none
/// dropout = 0.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Widths of the shared layers (default `[100]`).
    #[serde(default = "default_trunk_hidden")]
    pub hidden: Vec<i64>,
    /// Activation after each layer (default `relu`).
    #[serde(default)]
    pub activation: Activation,
    /// Dropout after each layer while training (default 0).
    #[serde(default)]
    pub dropout: f64,
    /// Which taps of the extractor the trunk reads (default: every tap).
    /// Heads without their own `taps` sit on the trunk; a head with `taps`
    /// reads those taps directly instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taps: Option<Vec<String>>,
}

impl Default for TrunkConfig {
    fn default() -> Self {
        TrunkConfig { hidden: default_trunk_hidden(), activation: Activation::Relu, dropout: 0.0, taps: None }
    }
}

/// Which feature columns the trunk and each head read (from the taps they
/// name; see [`crate::extractor::taps`]). The default: the trunk reads every
/// column, and every head the trunk's output (every column without a trunk).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    /// Column ranges `(start, len)` the trunk reads; `None`: all.
    pub trunk: Option<Vec<(i64, i64)>>,
    /// Per head, in model order, the column ranges it reads directly; `None`
    /// (or a missing entry): the trunk's output, or all columns without a trunk.
    pub heads: Vec<Option<Vec<(i64, i64)>>>,
}

impl Routes {
    fn head(&self, i: usize) -> Option<&[(i64, i64)]> {
        self.heads.get(i).and_then(|r| r.as_deref())
    }
}

fn width(ranges: &[(i64, i64)]) -> i64 {
    ranges.iter().map(|r| r.1).sum()
}

impl TrunkConfig {
    /// Builds the trunk under `p` (layers `p / "0"`, `p / "1"`, ...), each layer
    /// followed by the activation and dropout. Errors on an empty `hidden`, a
    /// non-positive width or a dropout outside `[0, 1)`.
    pub fn build(&self, p: nn::Path, in_dim: i64) -> Result<Trunk> {
        if self.hidden.is_empty() {
            return Err(Error::Invalid(
                "trunk.hidden is empty: give the layer widths (e.g. [100]) or remove [trunk]".into(),
            ));
        }
        let mlp = Mlp::new(&p, in_dim, &self.hidden, "", self.activation, self.dropout)
            .map_err(|e| Error::Invalid(format!("trunk: {e}")))?;
        Ok(Trunk { mlp })
    }
}

/// The shared layers, built by [`TrunkConfig::build`].
#[derive(Debug)]
pub struct Trunk {
    mlp: Mlp,
}

impl Trunk {
    /// Width of the trunk's output, the heads' input.
    pub fn out_dim(&self) -> i64 {
        self.mlp.out_dim()
    }

    /// Runs the trunk; dropout only when `train`.
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, out_dim]`.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.mlp.forward_t(features, train)
    }
}

/// Rows per forward pass of [`MultiHeadModel::forward_eval`] when the model has a tail.
pub const EVAL_ROWS: i64 = 256;

/// Optional tail and trunk plus heads, with each head's loss weight.
pub struct MultiHeadModel {
    tail: Option<Box<dyn TrainableTail>>,
    feature_dim: i64,
    routes: Routes,
    trunk: Option<Trunk>,
    heads: Vec<Box<dyn PropertyHead>>,
    names: Vec<String>,
    weights: Vec<f64>,
    /// `[n_heads]` trained log-variances, with learned loss weighting.
    log_vars: Option<Tensor>,
}

impl std::fmt::Debug for MultiHeadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiHeadModel")
            .field("tail", &self.tail.as_ref().map(|t| (t.in_dim(), t.out_dim())))
            .field("trunk", &self.trunk)
            .field("heads", &self.names)
            .field("weights", &self.weights)
            .field("learned_weights", &self.log_vars.is_some())
            .finish()
    }
}

impl MultiHeadModel {
    /// Builds the trunk under `vs_root / "trunk"` (when given) and each head
    /// under `vs_root / "heads" / <name>`, from its config and the state its
    /// [`HeadConfig::fit`] made. `in_dim` is the width of the features the
    /// trunk (or the heads) take: the extractor's, or the output of the tail
    /// added with [`with_tail`](Self::with_tail).
    ///
    /// Errors on no heads, duplicate head names, a name that is empty or holds
    /// a `.`, a negative or non-finite loss weight, and whatever the trunk's or
    /// a head's build rejects.
    pub fn new<H: Borrow<dyn HeadConfig>>(
        vs_root: &nn::Path,
        in_dim: i64,
        trunk: Option<&TrunkConfig>,
        heads: &[(H, HeadState)],
    ) -> Result<MultiHeadModel> {
        Self::routed(vs_root, in_dim, trunk, heads, Routes::default())
    }

    /// Like [`new`](Self::new), with the trunk and each head reading the
    /// feature columns `routes` gives (a head with its own columns bypasses
    /// the trunk). Errors on a range outside `0..in_dim` or an empty one.
    pub fn routed<H: Borrow<dyn HeadConfig>>(
        vs_root: &nn::Path,
        in_dim: i64,
        trunk: Option<&TrunkConfig>,
        heads: &[(H, HeadState)],
        routes: Routes,
    ) -> Result<MultiHeadModel> {
        let ranges = routes.trunk.iter().chain(routes.heads.iter().flatten());
        for r in ranges {
            if r.is_empty() || r.iter().any(|&(s, l)| s < 0 || l <= 0 || s + l > in_dim) {
                return Err(Error::Invalid(format!(
                    "feature columns {r:?} are not within the {in_dim} features"
                )));
            }
        }
        if heads.is_empty() {
            return Err(Error::Invalid("the model has no heads: declare at least one [[heads]]".into()));
        }
        let names = heads.iter().map(|(c, _)| c.borrow().name());
        if let Some((_, message)) = crate::head::head_name_problems(names).into_iter().next() {
            return Err(Error::Invalid(message));
        }
        for (config, _) in heads {
            let config = config.borrow();
            let name = config.name();
            let w = config.loss_weight();
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::Invalid(format!(
                    "head `{name}`: weight must be finite and >= 0, got {w}"
                )));
            }
        }
        let trunk_in = routes.trunk.as_deref().map_or(in_dim, width);
        let trunk = trunk.map(|t| t.build(vs_root / "trunk", trunk_in)).transpose()?;
        let shared_in = trunk.as_ref().map_or(in_dim, Trunk::out_dim);
        let root = vs_root / "heads";
        let mut built = Vec::with_capacity(heads.len());
        for (i, (config, state)) in heads.iter().enumerate() {
            let config = config.borrow();
            let head_in = routes.head(i).map_or(shared_in, width);
            built.push(config.build(&root / config.name(), head_in, state)?);
        }
        Ok(MultiHeadModel {
            tail: None,
            feature_dim: in_dim,
            routes,
            trunk,
            names: heads.iter().map(|(c, _)| c.borrow().name().to_string()).collect(),
            weights: heads.iter().map(|(c, _)| c.borrow().loss_weight()).collect(),
            heads: built,
            log_vars: None,
        })
    }

    /// Switches the objective to learned uncertainty weighting (Kendall, Gal
    /// and Cipolla 2018): one trained log-variance `s_i` per head, the
    /// variable `log_var` (`[n_heads]`, starting at 0) under `p`, and
    /// [`total_loss`](Self::total_loss) becomes
    /// `Σ weight_i · (exp(-s_i) · loss_i + s_i / 2)`.
    ///
    /// ```
    /// use furcate_core::head::regression::RegressionConfig;
    /// use furcate_core::model::MultiHeadModel;
    /// use furcate_core::HeadConfig;
    /// use tch::{nn, Device, Tensor};
    ///
    /// let a: Box<dyn HeadConfig> = Box::new(RegressionConfig::new("a"));
    /// let b: Box<dyn HeadConfig> = Box::new(RegressionConfig::new("b"));
    /// let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let model = MultiHeadModel::new(&vs.root(), 4, None, &[(a, state.clone()), (b, state)])?
    ///     .with_learned_weights(&(vs.root() / "loss_weighting"));
    /// assert_eq!(model.effective_weights(), vec![1.0, 1.0]);
    /// // At s = 0 the objective is the plain sum.
    /// let total = model.total_loss(&[Tensor::from(2.0f32), Tensor::from(3.0f32)]);
    /// assert_eq!(total.double_value(&[]), 5.0);
    /// assert!(vs.variables().contains_key("loss_weighting.log_var"));
    /// # Ok::<(), furcate_core::Error>(())
    /// ```
    pub fn with_learned_weights(mut self, p: &nn::Path) -> Self {
        self.log_vars = Some(p.zeros("log_var", &[self.heads.len() as i64]));
        self
    }

    /// Each head's current weight in the objective: its configured weight,
    /// times `exp(-s_i)` with learned weighting.
    pub fn effective_weights(&self) -> Vec<f64> {
        match &self.log_vars {
            None => self.weights.clone(),
            Some(s) => {
                let s = to_vec_f64(s);
                self.weights.iter().zip(s).map(|(w, s)| w * (-s).exp()).collect()
            }
        }
    }

    /// Puts `tail`, the trainable last stages of the backbone (built in the
    /// same `VarStore`), before the trunk: the model then takes the features
    /// at the extractor's frozen boundary, `[N, tail.in_dim()]`. Errors when
    /// the tail's output width is not the `in_dim` the model was built for.
    ///
    /// ```
    /// use furcate_core::extractor::resnet50::ResNet50Config;
    /// use furcate_core::extractor::frozen::BackboneConfig;
    /// use furcate_core::head::classification::ClassificationConfig;
    /// use furcate_core::model::MultiHeadModel;
    /// use furcate_core::runtime::DeviceSpec;
    /// use furcate_core::{BuildContext, ExtractorConfig, FeatureExtractor, HeadConfig};
    /// use tch::{nn, Device, Kind, Tensor};
    ///
    /// let cfg =
    ///     BackboneConfig { size: 32, trainable_stages: 1, device: DeviceSpec::Cpu, ..Default::default() };
    /// let extractor = ResNet50Config(cfg).build(&BuildContext::default())?;
    /// let vs = nn::VarStore::new(Device::Cpu);
    /// let tail = extractor.trainable_tail(&(vs.root() / "backbone"))?.expect("a tail");
    /// let head: Box<dyn HeadConfig> = Box::new(ClassificationConfig::new("kind"));
    /// let heads = vec![(head, serde_json::json!({ "classes": ["a", "b"] }))];
    /// let model = MultiHeadModel::new(&vs.root(), tail.out_dim(), None, &heads)?.with_tail(tail)?;
    /// let boundary = extractor.extract(&Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu)))?;
    /// assert_eq!(model.forward(&boundary, false)?[0].size(), [2, 2]);
    /// assert!(vs.variables().contains_key("backbone.layer4.2.conv3.weight"));
    /// # Ok::<(), furcate_core::Error>(())
    /// ```
    pub fn with_tail(mut self, tail: Box<dyn TrainableTail>) -> Result<MultiHeadModel> {
        if tail.out_dim() != self.feature_dim {
            return Err(Error::Invalid(format!(
                "the trainable tail gives {} features but the model was built for {}",
                tail.out_dim(),
                self.feature_dim
            )));
        }
        self.tail = Some(tail);
        Ok(self)
    }

    /// The trainable tail, when there is one.
    pub fn tail(&self) -> Option<&dyn TrainableTail> {
        self.tail.as_deref()
    }

    /// Width of the features the model takes: the tail's input when there is
    /// a tail, else the trunk's (or heads') input.
    pub fn in_dim(&self) -> i64 {
        self.tail.as_ref().map_or(self.feature_dim, |t| t.in_dim())
    }

    /// The trunk, when there is one.
    pub fn trunk(&self) -> Option<&Trunk> {
        self.trunk.as_ref()
    }

    /// The heads, in config order.
    pub fn heads(&self) -> &[Box<dyn PropertyHead>] {
        &self.heads
    }

    /// The heads' names, in config order.
    pub fn head_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Each head's weight in the total loss, in config order.
    pub fn loss_weights(&self) -> &[f64] {
        &self.weights
    }

    /// Every head's raw output: tail, trunk, heads; dropout only when `train`.
    ///
    /// # Shapes
    /// `features`: `[N, D]` -> one `[N, K_i]` per head.
    pub fn forward(&self, features: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let features = match &self.tail {
            Some(t) => t.forward_t(features, train)?,
            None => features.shallow_clone(),
        };
        let columns = |r: Option<&[(i64, i64)]>| match r {
            Some(r) => select_columns(&features, r),
            None => features.shallow_clone(),
        };
        let shared = match &self.trunk {
            Some(t) => t.forward_t(&columns(self.routes.trunk.as_deref()), train)?,
            None => features.shallow_clone(),
        };
        self.heads
            .iter()
            .enumerate()
            .map(|(i, h)| match self.routes.head(i) {
                Some(r) => h.forward(&select_columns(&features, r), train),
                None => h.forward(&shared, train),
            })
            .collect()
    }

    /// Which feature columns the trunk and each head read.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Whether every head's loss depends only on that head's own variables:
    /// no tail, no trunk, no learned loss weights. Such heads can be solved
    /// one by one ([`forward_head`](Self::forward_head)).
    pub fn heads_are_separable(&self) -> bool {
        self.tail.is_none() && self.trunk.is_none() && self.log_vars.is_none()
    }

    /// Head `i`'s raw output on the columns it reads, for a model whose heads
    /// are separable; `None` otherwise (or for an `i` out of range).
    ///
    /// # Shapes
    /// `features`: `[N, D]` -> `[N, K_i]`.
    pub fn forward_head(&self, i: usize, features: &Tensor, train: bool) -> Option<Result<Tensor>> {
        let input = self.head_input(i, features)?;
        Some(self.heads[i].forward(&input, train))
    }

    /// The columns of `features` head `i` reads, contiguous, for a model
    /// whose heads are separable; `None` otherwise (or for an `i` out of
    /// range). A solver that evaluates one head many times gathers its input
    /// once and calls the head's own `forward` on it.
    ///
    /// # Shapes
    /// `features`: `[N, D]` -> `[N, D_i]`.
    pub fn head_input(&self, i: usize, features: &Tensor) -> Option<Tensor> {
        if !self.heads_are_separable() || i >= self.heads.len() {
            return None;
        }
        Some(match self.routes.head(i) {
            Some(r) => select_columns(features, r).contiguous(),
            None => features.shallow_clone(),
        })
    }

    /// Every head's raw output in evaluation mode, under no-grad. With a
    /// tail, the rows go through in chunks of [`EVAL_ROWS`] so that the
    /// tail's activations stay small; each row's output is the same as
    /// [`forward`](Self::forward)'s.
    ///
    /// # Shapes
    /// `features`: `[N, D]` -> one `[N, K_i]` per head.
    pub fn forward_eval(&self, features: &Tensor) -> Result<Vec<Tensor>> {
        tch::no_grad(|| {
            let n = features.size().first().copied().unwrap_or(0);
            if self.tail.is_none() || n <= EVAL_ROWS {
                return self.forward(features, false);
            }
            let mut parts: Vec<Vec<Tensor>> = self.heads.iter().map(|_| Vec::new()).collect();
            let mut start = 0;
            while start < n {
                let len = EVAL_ROWS.min(n - start);
                let outputs = self.forward(&features.f_narrow(0, start, len)?, false)?;
                for (part, out) in parts.iter_mut().zip(outputs) {
                    part.push(out);
                }
                start += len;
            }
            parts.iter().map(|p| Ok(Tensor::f_cat(p, 0)?)).collect()
        })
    }

    /// Each head's loss over the samples it has a label for
    /// ([`PropertyHead::masked_loss`]); a head with no label in the batch
    /// gives a zero that is still attached to the graph.
    ///
    /// # Shapes
    /// `outputs` from [`forward`](Self::forward), one [`Targets`] per head -> one scalar per head.
    ///
    /// # Panics
    /// When `outputs` or `targets` do not have one entry per head (a bug in the caller).
    pub fn losses(&self, outputs: &[Tensor], targets: &[Targets]) -> Result<Vec<Tensor>> {
        assert_eq!(outputs.len(), self.heads.len(), "one output per head");
        assert_eq!(targets.len(), self.heads.len(), "one Targets per head");
        self.heads.iter().zip(outputs).zip(targets).map(|((h, o), t)| h.masked_loss(o, t)).collect()
    }

    /// The training objective: Σ weight_i · loss_i, or with learned weighting
    /// ([`with_learned_weights`](Self::with_learned_weights))
    /// Σ weight_i · (exp(-s_i) · loss_i + s_i / 2).
    ///
    /// # Shapes
    /// One scalar per head -> scalar.
    pub fn total_loss(&self, losses: &[Tensor]) -> Tensor {
        let mut terms =
            losses.iter().zip(&self.weights).enumerate().map(|(i, (l, w))| match &self.log_vars {
                None => l * *w,
                Some(s) => {
                    let s = s.get(i as i64);
                    (l * (-&s).exp() + s * 0.5) * *w
                }
            });
        match terms.next() {
            Some(first) => terms.fold(first, |acc, t| acc + t),
            None => Tensor::from(0.0f32),
        }
    }

    /// Every head's predictions, decoded from [`forward`](Self::forward)'s outputs.
    ///
    /// # Shapes
    /// One `[N, K_i]` per head -> per head, `N` predictions.
    pub fn decode(&self, outputs: &[Tensor]) -> Result<Vec<Vec<Prediction>>> {
        self.heads.iter().zip(outputs).map(|(h, o)| h.decode(o)).collect()
    }
}
