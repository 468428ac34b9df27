//! The `regression` head: one continuous value per sample (an exact volume
//! fraction, say), with MSE, Huber or L1 loss.
//!
//! ```toml
//! [[heads]]
//! type = "regression"
//! name = "fraction"
//! column = "fraction"     # default: the name
//! weight = 1.0            # weight in the total loss
//! hidden = []             # hidden layer widths; empty: one linear layer
//! dropout = 0.0           # after each hidden layer, while training
//! loss = "mse"            # mse | huber | l1
//! huber_delta = 1.0       # in standardised units when standardise = true
//! bounds = [0.0, 1.0]     # optional: predictions always inside, in data units
//! standardise = true      # learn (value - mean) / std
//! tolerance = 0.025       # optional: |error| <= tolerance counts as correct
//! ```
//!
//! **Scaling.** [`fit`](HeadConfig::fit) stores the mean and the (population)
//! standard deviation of the training targets as the head's [`HeadState`],
//! `{"mean": .., "std": ..}`; a standard deviation of 0 (constant targets) is
//! stored as 1. With `standardise = true` (the default) the head learns and
//! outputs `(value - mean) / std`, and [`decode`](PropertyHead::decode) maps
//! back to data units; with `standardise = false` the state is kept but not used.
//! The loss, and so `huber_delta`, is in those learned units.
//!
//! **Bounds.** With `bounds = [lo, hi]` a label outside the bounds is an
//! error, and every prediction is clipped into them: the model itself stays
//! linear in its last layer, so a squared-loss head without hidden layers is
//! still least squares, solved exactly ([`PropertyHead::least_squares`]).
//! The scores count the predictions that were clipped (`clipped`). Runs made
//! before bounds were clipped squashed the output through
//! `lo + (hi - lo) · sigmoid(z)` instead; their state has no `"bounds":
//! "clip"` and they still load and predict exactly as they were trained.
//!
//! **Exact solution.** With `loss = "mse"`, `hidden = []` and `optimizer =
//! "lbfgs"`, the head is ridge regression on its standardised taps: solved in
//! closed form, its weight decay chosen along the whole path by leave-one-out
//! ([`crate::train::ridge`]).
//!
//! ```
//! use furcate_core::head::regression::RegressionConfig;
//! use furcate_core::HeadConfig;
//!
//! let state = RegressionConfig::new("fraction").fit(&[Some("0.1"), None, Some("0.3")]).unwrap();
//! assert!(state.get("bounds").is_none()); // "clip" only with bounds
//! assert!((state["mean"].as_f64().unwrap() - 0.2).abs() < 1e-12);
//! assert!((state["std"].as_f64().unwrap() - 0.1).abs() < 1e-12);
//! ```

use serde::{Deserialize, Serialize};
use tch::{nn, Reduction, Tensor};

use super::{
    cell, encode_cells, HeadConfig, HeadScore, HeadState, Labels, LeastSquares, Prediction, PropertyHead,
    Targets,
};
use crate::layers::{to_vec_f64, Mlp};
use crate::metrics::{self, HeadMetrics};
use crate::{Error, Result};

/// The loss of a regression head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegressionLoss {
    /// Mean squared error.
    #[default]
    Mse,
    /// Huber loss with `huber_delta`: quadratic near 0, linear beyond.
    Huber,
    /// Mean absolute error.
    L1,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

crate::head_config! {
    /// The `[[heads]]` table of `type = "regression"`.
    pub struct RegressionConfig {
        /// The loss (default `mse`).
        #[serde(default)]
        pub loss: RegressionLoss,
        /// Huber's delta, in the learned (standardised) units (default 1).
        #[serde(default = "one")]
        pub huber_delta: f64,
        /// `[lo, hi]`: labels must lie inside, predictions are clipped into them, in data units (default none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bounds: Option<[f64; 2]>,
        /// Learn standardised targets (default true).
        #[serde(default = "yes")]
        pub standardise: bool,
        /// A prediction within this distance of its label counts as correct, which
        /// gives the head an error rate (default none: no error rate).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerance: Option<f64>,
    }
}

impl RegressionConfig {
    fn check(&self) -> Result<()> {
        if !(self.huber_delta.is_finite() && self.huber_delta > 0.0) {
            return Err(self.invalid(format!("huber_delta must be finite and > 0, got {}", self.huber_delta)));
        }
        if let Some([lo, hi]) = self.bounds {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(
                    self.invalid(format!("bounds must be finite with lower < upper, got [{lo}, {hi}]"))
                );
            }
        }
        if let Some(t) = self.tolerance.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(self.invalid(format!("tolerance must be finite and >= 0, got {t}")));
        }
        Ok(())
    }
}

/// Parses a label: a finite number, inside `bounds` when given.
fn parse(head: &str, bounds: Option<[f64; 2]>, index: usize, label: &str) -> Result<f64> {
    let err =
        |what: String| Error::Label { index, message: format!("head `{head}`: label `{label}` {what}") };
    let v: f64 = label.parse().map_err(|_| err("is not a number".into()))?;
    if !v.is_finite() {
        return Err(err("is not a finite number".into()));
    }
    if let Some([lo, hi]) = bounds.filter(|[lo, hi]| v < *lo || v > *hi) {
        return Err(err(format!("is outside the head's bounds [{lo}, {hi}]")));
    }
    Ok(v)
}

/// `(shift, scale)` of a value head that learns `(value - shift) / scale`:
/// the mean and std of its state `{"mean": .., "std": ..}` (as
/// [`RegressionConfig::fit`] makes it) when it standardises, else `(0, 1)`.
/// A state without a finite mean and a finite std > 0 is an error naming head `head`.
///
/// ```
/// use furcate_core::head::regression::scaling;
///
/// let state = serde_json::json!({ "mean": 0.2, "std": 0.1 });
/// assert_eq!(scaling("f", &state, true)?, (0.2, 0.1));
/// assert_eq!(scaling("f", &state, false)?, (0.0, 1.0));
/// assert!(scaling("f", &serde_json::json!({ "mean": 0.2, "std": 0.0 }), true).is_err());
/// # Ok::<(), furcate_core::Error>(())
/// ```
pub fn scaling(head: &str, state: &HeadState, standardise: bool) -> Result<(f64, f64)> {
    let field = |key: &str| state.get(key).and_then(serde_json::Value::as_f64).filter(|v| v.is_finite());
    let (Some(mean), Some(std)) = (field("mean"), field("std").filter(|s| *s > 0.0)) else {
        return Err(super::head_error(
            head,
            format!("state must be {{\"mean\": number, \"std\": number > 0}}, got {state}"),
        ));
    };
    Ok(if standardise { (mean, std) } else { (0.0, 1.0) })
}

/// The state's `"bounds"` of a head whose predictions are clipped into its
/// bounds (absent in runs that squashed them through a sigmoid).
const CLIP: &str = "clip";

crate::register_type!(Head, "regression");

#[typetag::serde(name = "regression")]
impl HeadConfig for RegressionConfig {
    crate::head_config_methods!();

    /// Mean and population standard deviation of the non-missing labels
    /// (`{"mean": .., "std": ..}`, a zero std stored as 1), and `"bounds":
    /// "clip"` with bounds (predictions clipped, not squashed).
    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        self.check()?;
        let mut values = Vec::new();
        for (index, label) in labels.iter().enumerate() {
            if let Some(l) = cell(*label) {
                values.push(parse(&self.name, self.bounds, index, l)?);
            }
        }
        if values.is_empty() {
            return Err(self.invalid(format!("column `{}` has no labels", self.column())));
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let std = if std > 0.0 && std.is_finite() { std } else { 1.0 };
        let mut state = serde_json::json!({ "mean": mean, "std": std });
        if self.bounds.is_some() {
            state["bounds"] = CLIP.into();
        }
        Ok(state)
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        self.check()?;
        let (shift, scale) = scaling(&self.name, state, self.standardise)?;
        let mlp = self.mlp(&path, in_dim, 1)?;
        Ok(Box::new(RegressionHead {
            name: self.name.clone(),
            mlp,
            shift,
            scale,
            bounds: self.bounds,
            squash: self.bounds.is_some() && state.get("bounds").and_then(|b| b.as_str()) != Some(CLIP),
            loss: self.loss,
            huber_delta: self.huber_delta,
            tolerance: self.tolerance,
        }))
    }
}

/// A built regression head.
#[derive(Debug)]
pub struct RegressionHead {
    name: String,
    mlp: Mlp,
    shift: f64,
    scale: f64,
    bounds: Option<[f64; 2]>,
    /// The sigmoid form of bounds (runs made before predictions were clipped).
    squash: bool,
    loss: RegressionLoss,
    huber_delta: f64,
    tolerance: Option<f64>,
}

impl RegressionHead {
    fn invalid_input(&self, message: String) -> Error {
        Error::Invalid(format!("head `{}`: {message}", self.name))
    }

    /// `(shift, scale)`: the head learns `(value - shift) / scale` (the
    /// state's mean and std when standardising, else `(0, 1)`).
    pub fn scaling(&self) -> (f64, f64) {
        (self.shift, self.scale)
    }
}

impl PropertyHead for RegressionHead {
    fn name(&self) -> &str {
        &self.name
    }

    /// The prediction in learned units (standardised when configured); a run
    /// of the sigmoid form squashes it into the bounds here (clipping is in
    /// [`decode`](PropertyHead::decode)).
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, 1]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let z =
            self.mlp.forward_t(features, train).map_err(|e| self.invalid_input(format!("forward: {e}")))?;
        Ok(match self.bounds {
            Some([lo, hi]) if self.squash => ((z.sigmoid() * (hi - lo) + lo) - self.shift) / self.scale,
            _ => z,
        })
    }

    fn least_squares(&self) -> Option<LeastSquares> {
        let linear = self.mlp.single_linear().filter(|_| self.loss == RegressionLoss::Mse && !self.squash)?;
        Some(LeastSquares { weight: linear.ws.shallow_clone(), bias: linear.bs.as_ref()?.shallow_clone() })
    }

    /// MSE, Huber or L1, mean over the rows, in learned units.
    ///
    /// # Shapes
    /// `output`: `[M, 1]`, `target`: `[M, 1]` or `[M]` -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        let run = || -> std::result::Result<Tensor, tch::TchError> {
            let target =
                target.f_to_kind(output.kind())?.f_to_device(output.device())?.f_reshape(output.size())?;
            match self.loss {
                RegressionLoss::Mse => output.f_mse_loss(&target, Reduction::Mean),
                RegressionLoss::Huber => output.f_huber_loss(&target, Reduction::Mean, self.huber_delta),
                RegressionLoss::L1 => output.f_l1_loss(&target, Reduction::Mean),
            }
        };
        run().map_err(|e| self.invalid_input(format!("loss: {e}")))
    }

    /// Parsed and scaled values (`[N, 1]`, Float); a label that is not a
    /// finite number, or lies outside the bounds, is an [`Error::Label`].
    fn encode(&self, labels: &Labels) -> Result<Targets> {
        let t = encode_cells(labels, |index, l| {
            let v = parse(&self.name, self.bounds, index, l)?;
            Ok(((v - self.shift) / self.scale) as f32)
        })?;
        Ok(Targets { values: t.values.reshape([-1, 1]), mask: t.mask })
    }

    /// Values in data units (clipped into the bounds), without a standard deviation.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        if !matches!(output.size().as_slice(), [_, 1] | [_]) {
            return Err(self.invalid_input(format!("an output of shape {:?}, not [N, 1]", output.size())));
        }
        Ok(to_vec_f64(output)
            .into_iter()
            .map(|z| {
                let v = z * self.scale + self.shift;
                let value = match self.bounds {
                    Some([lo, hi]) => v.clamp(lo, hi),
                    None => v,
                };
                Prediction::Value { value, std: None }
            })
            .collect())
    }

    /// MAE, RMSE, R² (`null` for constant labels), max error and `n`
    /// ([`metrics::regression`]); with a tolerance also the fraction within
    /// it, which makes the error rate and the per-sample `correct`.
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        let invalid = |m: String| Error::Invalid(format!("head `{}`: {m}", self.name));
        if predictions.len() != labels.len() {
            return Err(invalid(format!("{} predictions for {} labels", predictions.len(), labels.len())));
        }
        let mut pairs = Vec::new();
        let mut correct = Vec::with_capacity(labels.len());
        for (index, (p, l)) in predictions.iter().zip(labels).enumerate() {
            let Some(l) = cell(*l) else {
                correct.push(None);
                continue;
            };
            let truth = parse(&self.name, None, index, l)?;
            let Prediction::Value { value, .. } = p else {
                return Err(invalid(format!("prediction {index} is not a value: {p:?}")));
            };
            correct.push(self.tolerance.map(|t| (value - truth).abs() <= t));
            pairs.push((truth, *value));
        }
        let mut m = metrics::regression(&pairs, self.tolerance);
        if let Some([lo, hi]) = self.bounds {
            m.clipped = Some(pairs.iter().filter(|(_, p)| *p <= lo || *p >= hi).count() as u64);
        }
        Ok(HeadScore {
            error_rate: m.within_tolerance.map(|w| 1.0 - w),
            correct,
            metrics: HeadMetrics { values: Some(m), ..HeadMetrics::default() },
        })
    }
}
