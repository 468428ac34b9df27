//! `[training]`: the optimiser, the weight decay, the split and the
//! validation rules the run and its choices follow.
//!
//! Re-exported by [`crate::config`], which reads the whole run configuration.

use serde::{Deserialize, Serialize};

use crate::runtime::DeviceSpec;
use crate::values::WordOrNumbers;

/// Below this many validation rows, choices (taps, weight decay) are scored
/// by k-fold cross-validation inside the training part instead
/// ([`crate::run::choose`]).
pub const MIN_VALIDATION_ROWS: usize = 100;

/// How the heads' losses make the training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossWeighting {
    /// `Σ weight_i · loss_i` with each head's configured `weight`.
    #[default]
    Fixed,
    /// Learned homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla,
    /// CVPR 2018): `Σ weight_i · (exp(-s_i) · loss_i + s_i / 2)` with one
    /// trained log-variance `s_i` per head (starting at 0, so the first epoch
    /// equals fixed weighting). A head whose loss stays high is down-weighted.
    Uncertainty,
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (L2 penalty added to the gradient when `weight_decay > 0`).
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// Full-batch L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS's
    /// algorithm, [`crate::train::lbfgs`]): the heads on cached features are a
    /// (nearly) convex problem, solved to its optimum. `epochs` is the most
    /// iterations; `weight_decay` is an L2 penalty; dropout is off (the
    /// objective must be deterministic); `batch_size` must be 0.
    Lbfgs,
}

/// `[training] weight_decay`: one value, a list to choose from, or `"auto"`.
///
/// The penalty is `weight_decay / 2 · ||w||²` on every trained weight except
/// biases and learned loss weights. A list (or `"auto"`: [`WeightDecay::AUTO_GRID`])
/// is tried value by value; the one with the best validation score is kept
/// (per head when the heads share no trunk) and recorded in `metrics.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightDecay {
    /// This value.
    Fixed(f64),
    /// The best of these, by validation.
    Grid(Vec<f64>),
}

impl WeightDecay {
    /// The grid `"auto"` tries: 10^-6 .. 10^-1, extended past an end where
    /// a head's best, strictly better score sits there
    /// ([`crate::run::choose::past_the_end`]).
    pub const AUTO_GRID: [f64; 6] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1];

    /// Decades `"auto"` adds at an end of its grid or path where the best
    /// value sits (L-BFGS heads: at most this many, one at a time; exact
    /// heads: this many at once, at most twice).
    pub const EXTEND_DECADES: i32 = 4;

    /// The values to try (one for a fixed value).
    pub fn values(&self) -> Vec<f64> {
        match self {
            WeightDecay::Fixed(v) => vec![*v],
            WeightDecay::Grid(g) => g.clone(),
        }
    }

    /// Whether this is `"auto"` (an exact head then searches a wider path of
    /// its own, [`crate::run::exact::AUTO_PATH`]).
    pub fn is_auto(&self) -> bool {
        matches!(self, WeightDecay::Grid(g) if *g == WeightDecay::AUTO_GRID)
    }

    /// Whether there is a choice to make.
    pub fn is_search(&self) -> bool {
        matches!(self, WeightDecay::Grid(g) if g.len() > 1)
    }
}

impl Default for WeightDecay {
    fn default() -> Self {
        WeightDecay::Fixed(0.0)
    }
}

impl Serialize for WeightDecay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            WeightDecay::Fixed(v) => s.serialize_f64(*v),
            WeightDecay::Grid(g) if *g == WeightDecay::AUTO_GRID => s.serialize_str("auto"),
            WeightDecay::Grid(g) => g.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WeightDecay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let expected = "a number, a list of numbers, or \"auto\"";
        match WordOrNumbers::read(d, expected)? {
            WordOrNumbers::Number(v) => Ok(WeightDecay::Fixed(v)),
            WordOrNumbers::List(g) => Ok(WeightDecay::Grid(g)),
            WordOrNumbers::Word(w) if w == "auto" => Ok(WeightDecay::Grid(WeightDecay::AUTO_GRID.to_vec())),
            WordOrNumbers::Word(w) => {
                Err(serde::de::Error::custom(format!("weight_decay = \"{w}\": expected {expected}")))
            }
        }
    }
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Adam or AdamW.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Weight decay (L2): a number, a list to choose from by validation, or
    /// `"auto"` (see [`WeightDecay`]).
    #[serde(default)]
    pub weight_decay: WeightDecay,
    /// Rows per step; absent or 0 means full batch.
    #[serde(default)]
    pub batch_size: usize,
    /// Most epochs to train.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many epochs without a better validation loss (needs a validation part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Fraction of the samples held out for testing.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Fraction of the remaining samples used for validation (early stopping,
    /// best epoch, choices). Absent: see [`TrainingConfig::validation_fraction_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// Cross-validate in this many stratified folds before training the
    /// final model on all the labelled images (see [`crate::run::folds`]);
    /// absent: one train / test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// Seed of the split, the initialisation and the batch order.
    #[serde(default)]
    pub seed: u64,
    /// Where the heads train.
    #[serde(default = "default_train_device")]
    pub device: DeviceSpec,
    /// Standardise each feature with the training rows' mean and std before
    /// the trunk and heads (stored in the checkpoint). Default: on with
    /// `lbfgs` (an L2 penalty and a line search need features on one scale),
    /// off with Adam. Refused with `extractor.trainable_stages > 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardise_features: Option<bool>,
    /// L-BFGS settings, for `optimizer = "lbfgs"`.
    #[serde(default)]
    pub lbfgs: super::lbfgs::LbfgsConfig,
    /// Write a resumable checkpoint every this many epochs.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// How the heads' losses are combined (`fixed` or `uncertainty`).
    #[serde(default)]
    pub loss_weighting: LossWeighting,
    /// Whether and how class heads also learn from the training part's
    /// unlabelled images (`[data] unlabelled`, manifest rows without labels);
    /// default `off` ([`SemiSupervised`]).
    #[serde(default, skip_serializing_if = "SemiSupervised::is_off")]
    pub semi_supervised: SemiSupervised,
    /// With `semi_supervised`: whether the test part's images (their pixels,
    /// never their labels) join the unlabelled ones. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transductive: bool,
    /// The graph and spreading of `semi_supervised = "propagation"`.
    #[serde(default, skip_serializing_if = "crate::train::propagate::PropagationConfig::is_default")]
    pub propagation: crate::train::propagate::PropagationConfig,
}

fn default_lr() -> f64 {
    1e-3
}
fn default_epochs() -> usize {
    1024
}
fn default_test_fraction() -> f64 {
    0.2
}
fn default_train_device() -> DeviceSpec {
    DeviceSpec::Cpu
}
fn default_checkpoint_every() -> usize {
    64
}

/// Below this many rows left after the test part, the default validation part is empty.
pub const MIN_ROWS_FOR_VALIDATION: usize = 50;

/// The default validation fraction, where a validation part is made.
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.1;

impl TrainingConfig {
    /// The validation fraction for a training part of `rows` rows (the rows
    /// left after the test part), and why, when it is the default.
    ///
    /// `validation_fraction` when it is set. Otherwise
    /// [`DEFAULT_VALIDATION_FRACTION`] when there are at least
    /// [`MIN_ROWS_FOR_VALIDATION`] rows (Adam and AdamW: the best epoch and
    /// early stopping need it), else 0. With `lbfgs` (no early stopping; the
    /// weight decay is chosen by k-fold inside the training part when the
    /// validation part would be small) the default is
    /// [`DEFAULT_VALIDATION_FRACTION`] only when that makes at least
    /// [`MIN_VALIDATION_ROWS`] rows, else 0, so that no
    /// row is kept from the fit for nothing.
    ///
    /// ```
    /// use furcate_core::config::TrainingConfig;
    ///
    /// let adam = TrainingConfig::default();
    /// assert_eq!(adam.validation_fraction_for(90).0, 0.1);
    /// assert_eq!(adam.validation_fraction_for(30).0, 0.0);
    /// let lbfgs: TrainingConfig = toml::from_str("optimizer = \"lbfgs\"").unwrap();
    /// assert_eq!(lbfgs.validation_fraction_for(90).0, 0.0);
    /// assert_eq!(lbfgs.validation_fraction_for(3150).0, 0.1);
    /// ```
    pub fn validation_fraction_for(&self, rows: usize) -> (f64, Option<String>) {
        if let Some(v) = self.validation_fraction {
            return (v, None);
        }
        let min_val = MIN_VALIDATION_ROWS;
        let lbfgs = self.optimizer == OptimizerKind::Lbfgs;
        let enough = if lbfgs {
            (DEFAULT_VALIDATION_FRACTION * rows as f64).round() as usize >= min_val
        } else {
            rows >= MIN_ROWS_FOR_VALIDATION
        };
        if enough {
            let why = format!(
                "validation part: {DEFAULT_VALIDATION_FRACTION} of the {rows} training rows (the default; \
                 set training.validation_fraction to change it)"
            );
            (DEFAULT_VALIDATION_FRACTION, Some(why))
        } else if lbfgs {
            let why = format!(
                "no validation part: with lbfgs and {rows} training rows, 10 % would be fewer than \
                 {min_val} rows, so choices are scored by k-fold inside the training part and every \
                 row is fitted (the default; set training.validation_fraction to change it)"
            );
            (0.0, Some(why))
        } else {
            let why = format!(
                "no validation part: only {rows} training rows (fewer than {MIN_ROWS_FOR_VALIDATION}; \
                 the default; set training.validation_fraction to change it)"
            );
            (0.0, Some(why))
        }
    }

    /// Whether features are standardised: `standardise_features`, by default
    /// on with `lbfgs` and off otherwise.
    pub fn standardise(&self) -> bool {
        self.standardise_features.unwrap_or(self.optimizer == OptimizerKind::Lbfgs)
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        toml::from_str("").expect("every training field has a default")
    }
}

/// `[training] semi_supervised`: how the class heads use unlabelled images.
///
/// With `propagation`, the heads are first fitted on the labelled images;
/// each class head's standardised outputs (logits) on the labelled and
/// unlabelled images then make a k-nearest-neighbour graph, over which the
/// labels spread ([`crate::train::propagate`]); the heads are fitted again
/// with each unlabelled image carrying its spread label. Value heads use the
/// labelled images only.
///
/// With `auto`, each class head propagates only where it pays on held-out
/// labels: the labelled images are split into `[training.propagation]
/// folds`; per fold, its images' labels are hidden (they join the
/// unlabelled ones), and the heads are fitted on the rest with and without
/// propagation; a head propagates when its errors on the hidden labels,
/// summed over the folds, are fewer with propagation than without
/// (the run's notes give both counts). A tie keeps it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemiSupervised {
    /// Labelled images only.
    #[default]
    Off,
    /// Label spreading over a k-nearest-neighbour graph, then a second fit.
    Propagation,
    /// `propagation` for the class heads where it lowers the held-out error,
    /// `off` for the others, chosen by cross-validation on the labelled images
    /// (whose fits take the run's own taps and weight decays).
    Auto,
}

impl SemiSupervised {
    /// Whether it is `off` (the default).
    pub fn is_off(&self) -> bool {
        *self == SemiSupervised::Off
    }
}
