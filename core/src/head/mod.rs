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

/// Declares the config struct of a head: the fields every `[[heads]]` table
/// has, then the head's own. One place for what all heads share:
///
/// - `name` (required), `column` (default: the name), `weight` (default 1),
///   `hidden` (hidden layer widths, default none), `dropout` (default 0) and
///   `taps` (default: the trunk's output, or every tap when there is no trunk);
/// - `Debug, Clone, PartialEq, Serialize, Deserialize` with
///   `deny_unknown_fields`, so that an unknown key is an error at its line;
/// - `new(name)`: every other field at its serde default (each own field
///   needs one);
/// - `invalid(message)`: an [`Error::Invalid`](crate::Error::Invalid) that
///   names the head; `mlp(path, in_dim, outputs)`: the head's network from
///   `hidden` and `dropout`.
///
/// Inside the head's `impl HeadConfig`, [`head_config_methods!`](crate::head_config_methods) answers
/// `name`, `column`, `loss_weight` and `taps` from those fields. The crate
/// that uses the macro needs `serde` and `tch` as dependencies.
///
/// ```
/// use furcate_core::extractor::taps::TapSelection;
///
/// furcate_core::head_config! {
///     /// The `[[heads]]` table of `type = "mine"`.
///     pub struct MineConfig {
///         /// How sharp (default 0).
///         #[serde(default)]
///         pub sharpness: f64,
///     }
/// }
///
/// let c = MineConfig::new("m");
/// assert_eq!((c.name.as_str(), c.column, c.weight, c.sharpness), ("m", None, 1.0, 0.0));
/// let read: MineConfig = toml::from_str("name = \"m\"\ntaps = \"auto\"\nsharpness = 2.0").unwrap();
/// assert_eq!(read.taps, Some(TapSelection::Auto));
/// let unknown = toml::from_str::<MineConfig>("name = \"m\"\nsharpnes = 2.0").unwrap_err();
/// assert!(unknown.to_string().contains("line 2"), "{unknown}");
/// ```
#[macro_export]
macro_rules! head_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $config:ident {
            $( $(#[$field_meta:meta])* $field_vis:vis $field:ident : $field_type:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $vis struct $config {
            /// The head's name, unique in the model.
            pub name: String,
            /// The label column (default: the name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub column: Option<String>,
            /// Weight of this head's loss in the total (default 1).
            #[serde(default = "furcate_core::head::default_weight")]
            pub weight: f64,
            /// Widths of hidden layers (ReLU) before the output layer (default none).
            #[serde(default)]
            pub hidden: Vec<i64>,
            /// Dropout after each hidden layer while training (default 0).
            #[serde(default)]
            pub dropout: f64,
            /// Which taps of the extractor the head reads: tap names, or `"auto"`
            /// to choose by validation (`furcate_core::extractor::taps`). Default:
            /// the trunk's output, or every tap when there is no trunk.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub taps: Option<$crate::extractor::taps::TapSelection>,
            $( $(#[$field_meta])* $field_vis $field: $field_type, )*
        }

        impl $config {
            /// A head named `name` with every other field at its default.
            pub fn new(name: impl Into<String>) -> Self {
                $crate::head::with_defaults(name.into())
            }

            /// An error about this head: "head `name`: message".
            pub fn invalid(&self, message: impl std::fmt::Display) -> $crate::Error {
                $crate::head::head_error(&self.name, message)
            }

            /// The head's network under `path`: the `hidden` layers (ReLU, then
            /// `dropout` while training) and an output layer of `outputs` units.
            pub fn mlp(
                &self,
                path: &tch::nn::Path,
                in_dim: i64,
                outputs: i64,
            ) -> $crate::Result<$crate::layers::Mlp> {
                let relu = $crate::layers::Activation::Relu;
                $crate::layers::Mlp::new(path, in_dim, &self.hidden, "hidden", relu, self.dropout)
                    .and_then(|m| m.with_output(path, outputs))
                    .map_err(|e| self.invalid(e))
            }
        }
    };
}

/// The [`HeadConfig`] methods that a struct of [`head_config!`] answers from
/// its common fields: `name`, `column` (the name when not set), `loss_weight`
/// (`weight`) and `taps`. Invoke it inside the head's `impl HeadConfig`.
///
/// ```
/// use furcate_core::head::{HeadConfig, HeadState, Labels, PropertyHead};
/// use furcate_core::Result;
/// use tch::nn;
///
/// furcate_core::head_config! {
///     /// The `[[heads]]` table of `type = "mine"`.
///     pub struct MineConfig {}
/// }
///
/// #[typetag::serde(name = "mine")]
/// impl HeadConfig for MineConfig {
///     furcate_core::head_config_methods!();
///
///     fn fit(&self, _labels: &Labels) -> Result<HeadState> {
///         Ok(serde_json::json!({}))
///     }
///
///     fn build(&self, _path: nn::Path, _in_dim: i64, _state: &HeadState) -> Result<Box<dyn PropertyHead>> {
///         Err(self.invalid("not built in this example"))
///     }
/// }
///
/// let mine: Box<dyn HeadConfig> = toml::from_str("type = \"mine\"\nname = \"m\"\nweight = 2.0").unwrap();
/// assert_eq!((mine.name(), mine.column(), mine.loss_weight()), ("m", "m", 2.0));
/// assert!(mine.taps().is_none());
/// ```
#[macro_export]
macro_rules! head_config_methods {
    () => {
        fn name(&self) -> &str {
            &self.name
        }

        fn column(&self) -> &str {
            self.column.as_deref().unwrap_or(&self.name)
        }

        fn loss_weight(&self) -> f64 {
            self.weight
        }

        fn taps(&self) -> Option<&$crate::extractor::taps::TapSelection> {
            self.taps.as_ref()
        }
    };
}

/// The default `weight` of a head in the total loss: 1.
pub fn default_weight() -> f64 {
    1.0
}

/// A head config with `name` and every other field at its serde default
/// (the `new` of [`head_config!`]).
///
/// # Panics
/// When a field other than `name` has no serde default: a mistake in the
/// config struct, never in the input.
pub fn with_defaults<T: serde::de::DeserializeOwned>(name: String) -> T {
    let table =
        serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(std::iter::once(("name", name)));
    T::deserialize(table)
        .unwrap_or_else(|e| panic!("a head config field other than `name` has no default: {e}"))
}

/// An [`Error::Invalid`](crate::Error::Invalid) about head `head`: "head `head`: message".
pub fn head_error(head: &str, message: impl std::fmt::Display) -> crate::Error {
    crate::Error::Invalid(format!("head `{head}`: {message}"))
}

/// Every problem with the head names of a model, in head order: a name that
/// is empty or holds a `.` (names are parts of variable paths), or that an
/// earlier head already has. Each is the index of the head at fault and the
/// message. The one rule behind the config check (which adds the line) and
/// [`crate::model::MultiHeadModel::new`].
///
/// ```
/// use furcate_core::head::head_name_problems;
///
/// assert!(head_name_problems(["a", "b"]).is_empty());
/// let problems = head_name_problems(["a", "b", "a", "c.d"]);
/// assert_eq!(problems.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 3]);
/// assert!(problems[0].1.contains("duplicate head name `a`"));
/// ```
pub fn head_name_problems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(usize, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if name.is_empty() || name.contains('.') {
            problems.push((i, format!("head name `{name}`: a name must be non-empty and hold no `.`")));
        } else if !seen.insert(name) {
            problems.push((i, format!("duplicate head name `{name}`: head names must be unique")));
        }
    }
    problems
}

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

/// The state `{"classes": [...]}` of a discrete head from its `classes` in
/// output order (what [`class_list`] reads back); no class at all (no label
/// in the head's `column`) is an error naming head `head`.
///
/// ```
/// use furcate_core::head::{class_list, classes_state};
///
/// let state = classes_state("phase", "phase", vec!["ferrite", "pearlite"])?;
/// assert_eq!(class_list("phase", &state)?, ["ferrite", "pearlite"]);
/// assert!(classes_state("phase", "col", Vec::<String>::new()).unwrap_err().to_string().contains("column `col`"));
/// # Ok::<(), furcate_core::Error>(())
/// ```
pub fn classes_state<S: Serialize>(head: &str, column: &str, classes: Vec<S>) -> Result<HeadState> {
    if classes.is_empty() {
        return Err(head_error(head, format!("column `{column}` has no labels to learn the classes from")));
    }
    Ok(serde_json::json!({ "classes": classes }))
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

/// The linear layer of a head whose training objective is exactly least
/// squares on it ([`PropertyHead::least_squares`]).
#[derive(Debug)]
pub struct LeastSquares {
    /// `[K, D]` weight (a variable of the head, penalised by weight decay).
    pub weight: Tensor,
    /// `[K]` bias (a variable of the head, not penalised).
    pub bias: Tensor,
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

    /// `Some` when the head's output is one linear layer of its input and
    /// its [`loss`](Self::loss) is the mean squared error against the encoded
    /// targets: with `optimizer = "lbfgs"` the trainer then solves it exactly
    /// ([`crate::train::ridge`]) and scores its whole weight-decay path by
    /// leave-one-out, instead of iterating. Default `None`.
    fn least_squares(&self) -> Option<LeastSquares> {
        None
    }

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
    let flat = crate::layers::to_vec_f64(&probabilities.contiguous().view([-1]));
    flat.chunks(k.max(1)).map(<[f64]>::to_vec).collect()
}
