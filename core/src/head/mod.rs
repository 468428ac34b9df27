//! Property heads: one small network per labelled property, trained on the
//! extractor's features (or the shared trunk's output).
//!
//! A head is declared in TOML by `type`:
//!
//! ```toml
//! [[heads]]
//! type = "classification"
//! name = "morphology"
//! ```
//!
//! Its [`HeadConfig`] first [`fit`](HeadConfig::fit)s what it needs from the
//! training labels (class names, target scaling) into a [`HeadState`], which is
//! stored in the checkpoint, then [`build`](HeadConfig::build)s the module.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::Result;

pub mod classification;
pub mod regression;

/// A label cell with surrounding whitespace removed; `None` when it is missing
/// or blank (the convention of every built-in head).
pub fn cell(label: Option<&str>) -> Option<&str> {
    label.map(str::trim).filter(|l| !l.is_empty())
}

/// The class list of a discrete head's state `{"classes": [...]}`, checked:
/// present, non-empty, no class twice. Errors name head `head`.
///
/// ```
/// use furcate_core::head::class_list;
///
/// let state = serde_json::json!({ "classes": ["ferrite", "pearlite"] });
/// assert_eq!(class_list("phase", &state)?, ["ferrite", "pearlite"]);
/// let twice = serde_json::json!({ "classes": ["a", "a"] });
/// assert!(class_list("phase", &twice).unwrap_err().to_string().contains("head `phase`"));
/// # Ok::<(), furcate_core::Error>(())
/// ```
pub fn class_list(head: &str, state: &HeadState) -> Result<Vec<String>> {
    let invalid = |m: String| crate::Error::Invalid(format!("head `{head}`: {m}"));
    let classes: Vec<String> = state
        .get("classes")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .ok_or_else(|| invalid(format!("state must be {{\"classes\": [names]}}, got {state}")))?;
    if classes.is_empty() {
        return Err(invalid("state has no classes".into()));
    }
    if classes.iter().collect::<std::collections::BTreeSet<_>>().len() != classes.len() {
        return Err(invalid(format!("state lists a class twice: {classes:?}")));
    }
    Ok(classes)
}

/// Encodes each present label with `f(index, label)` (surrounding whitespace
/// trimmed); a missing or blank cell gets `T::default()` and mask `false`. A
/// helper for [`PropertyHead::encode`].
///
/// # Shapes
/// `N` labels -> values `[N]`, mask `[N]`.
pub fn encode_cells<T: tch::kind::Element + Default>(
    labels: &Labels,
    mut f: impl FnMut(usize, &str) -> Result<T>,
) -> Result<Targets> {
    let mut values = Vec::with_capacity(labels.len());
    let mut mask = Vec::with_capacity(labels.len());
    for (index, label) in labels.iter().enumerate() {
        let value = cell(*label).map(|l| f(index, l)).transpose()?;
        mask.push(value.is_some());
        values.push(value.unwrap_or_default());
    }
    Ok(Targets { values: Tensor::from_slice(&values), mask: Tensor::from_slice(&mask) })
}

/// What a head learned from the training labels before training (class names,
/// target mean and scale, ...). Stored in the checkpoint as JSON, so that a
/// saved run rebuilds exactly the same head.
pub type HeadState = serde_json::Value;

/// The raw labels of one property: one cell per sample, `None` where the cell is empty.
pub type Labels<'a> = [Option<&'a str>];

/// Targets of one head as tensors.
#[derive(Debug)]
pub struct Targets {
    /// Encoded targets, one row per sample (`[N]` class indices, `[N]` or `[N, K]` values).
    pub values: Tensor,
    /// `[N]` booleans: `false` where the label is missing; those rows add nothing to the loss.
    pub mask: Tensor,
}

/// One decoded prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prediction {
    /// A class with its probability.
    Class {
        /// Class name.
        label: String,
        /// Predicted probability of that class.
        probability: f64,
    },
    /// A continuous value, with its predicted standard deviation when the head has one.
    Value {
        /// The predicted value in the data's units.
        value: f64,
        /// Predicted standard deviation, for heads that predict their uncertainty.
        std: Option<f64>,
    },
}

impl Prediction {
    /// The prediction as `(column suffix, cell)` pairs for CSV output.
    pub fn cells(&self) -> Vec<(&'static str, String)> {
        match self {
            Prediction::Class { label, probability } => {
                vec![("", label.clone()), ("_probability", format!("{probability:.6}"))]
            }
            Prediction::Value { value, std: None } => vec![("", format!("{value:.6}"))],
            Prediction::Value { value, std: Some(s) } => {
                vec![("", format!("{value:.6}")), ("_std", format!("{s:.6}"))]
            }
        }
    }
}

/// A head's score on labelled data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadScore {
    /// Fraction of wrongly classified samples, for discrete heads; the
    /// thesis's "cumulative error" sums these over heads.
    pub error_rate: Option<f64>,
    /// Per sample: was the prediction right? `None` where the label is
    /// missing or the head has no notion of right (plain regression).
    pub correct: Vec<Option<bool>>,
    /// Every figure of the head, for `metrics.json`, the report and experiments.
    pub metrics: crate::metrics::HeadMetrics,
}

/// A trained or trainable head.
pub trait PropertyHead: Send {
    /// The head's name (unique in a model).
    fn name(&self) -> &str;

    /// The head's raw output. A libtorch failure (features of the wrong
    /// width, say) is an error, never a panic: use tch's `f_` methods.
    ///
    /// # Shapes
    /// `features`: `[N, D]` -> `[N, K]` (K: classes, or values per sample).
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor>;

    /// Mean loss over the rows given, against this head's own encoded targets.
    ///
    /// # Shapes
    /// `output`: `[M, K]`, `target`: `[M, ...]` -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor>;

    /// Encodes the raw labels of this head's column; an unusable label is an
    /// [`crate::Error::Label`] naming its sample.
    fn encode(&self, labels: &Labels) -> Result<Targets>;

    /// Decodes raw outputs into predictions in the data's terms.
    ///
    /// # Shapes
    /// `output`: `[N, K]` -> `N` predictions.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>>;

    /// Scores predictions against raw labels (missing labels are skipped).
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore>;

    /// The class names, for heads that predict classes (`None` for value heads).
    fn classes(&self) -> Option<&[String]> {
        None
    }

    /// Each class's probability, for heads that predict classes and can say
    /// (`None`: only the decoded class is known). Tiled runs average these
    /// over an image's tiles.
    ///
    /// # Shapes
    /// `output`: `[N, K]` -> `[N, classes]`, `f64`, CPU.
    fn probabilities(&self, output: &Tensor) -> Result<Option<Tensor>> {
        let _ = output;
        Ok(None)
    }

    /// The loss over the rows whose mask is set; zero (still attached to the
    /// graph) when no row has a label.
    ///
    /// # Shapes
    /// `output`: `[N, K]`, `targets`: `[N, ...]` with mask `[N]` -> scalar.
    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Result<Tensor> {
        let device = output.device();
        if targets.mask.numel() > 0 && targets.mask.f_all()?.f_int64_value(&[])? != 0 {
            return self.loss(output, &targets.values.f_to_device(device)?);
        }
        let idx = targets.mask.f_nonzero()?.f_squeeze_dim(1)?;
        if idx.size().first().copied().unwrap_or(0) == 0 {
            return Ok(output.f_sum(Kind::Float)?.f_mul_scalar(0.0)?);
        }
        let idx = idx.f_to_device(device)?;
        let target = targets.values.f_to_device(device)?.f_index_select(0, &idx)?;
        self.loss(&output.f_index_select(0, &idx)?, &target)
    }
}

/// The TOML table of a head; `type` picks the implementation.
#[typetag::serde(tag = "type")]
pub trait HeadConfig: Debug + Send + Sync {
    /// The head's name, unique in a model.
    fn name(&self) -> &str;

    /// The data column holding this head's labels (defaults to the name).
    fn column(&self) -> &str {
        self.name()
    }

    /// The head's weight in the total loss.
    fn loss_weight(&self) -> f64 {
        1.0
    }

    /// Which taps of the extractor the head reads (`taps = [...]` or
    /// `"auto"`, see [`crate::extractor::taps`]); `None` (the default): the
    /// trunk's output, or every tap when there is no trunk.
    fn taps(&self) -> Option<&crate::extractor::taps::TapSelection> {
        None
    }

    /// Whether the train/test split should be stratified on this head's labels
    /// (true for discrete properties).
    fn stratify(&self) -> bool {
        false
    }

    /// Learns from the training labels what the head needs before it is built.
    fn fit(&self, labels: &Labels) -> Result<HeadState>;

    /// Builds the head under `path` for `in_dim` input features.
    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>>;
}

/// The rows of a `[N, K]` probability tensor ([`PropertyHead::probabilities`]),
/// one `Vec` of `K` probabilities per row.
pub fn probability_rows(probabilities: &Tensor) -> Vec<Vec<f64>> {
    let k = probabilities.size().get(1).copied().unwrap_or(0) as usize;
    let flat = crate::model::to_vec_f64(&probabilities.contiguous().view([-1]));
    flat.chunks(k.max(1)).map(<[f64]>::to_vec).collect()
}
