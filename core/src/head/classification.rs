//! The `classification` head: softmax over the classes seen in the training
//! labels, cross-entropy loss with optional class weights and label smoothing.
//!
//! ```toml
//! [[heads]]
//! type = "classification"
//! name = "morphology"
//! column = "morphology"          # default: the name
//! weight = 1.0                   # weight in the total loss
//! hidden = []                    # hidden layer widths; empty: one linear layer
//! dropout = 0.0                  # after each hidden layer, while training
//! label_smoothing = 0.0          # in [0, 1)
//! class_weights = { rare = 3.0 } # per class name, others 1.0
//! ```
//!
//! The class names, sorted, are the head's [`HeadState`] (`{"classes": [...]}`),
//! kept in the checkpoint; output column `k` is class `k` of that list.
//!
//! ```
//! use furcate_core::head::classification::ClassificationConfig;
//! use furcate_core::HeadConfig;
//!
//! let config = ClassificationConfig::new("morphology");
//! let state = config.fit(&[Some("b"), None, Some("a"), Some("b")]).unwrap();
//! assert_eq!(state, serde_json::json!({ "classes": ["a", "b"] }));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tch::{nn, Device, Kind, Reduction, Tensor};

use super::{
    cell, class_list, classes_state, encode_cells, HeadConfig, HeadScore, HeadState, Labels, Prediction,
    PropertyHead, Targets,
};
use crate::layers::{to_vec_f64, Mlp};
use crate::metrics::{self, HeadMetrics};
use crate::{Error, Result};

crate::head_config! {
    /// The `[[heads]]` table of `type = "classification"`.
    pub struct ClassificationConfig {
        /// Loss weight per class name; classes not listed weigh 1 (default: all 1).
        /// The loss is then the weighted mean over the samples, as PyTorch's
        /// `cross_entropy(weight=...)`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub class_weights: Option<BTreeMap<String, f64>>,
        /// Label smoothing in `[0, 1)` (default 0).
        #[serde(default)]
        pub label_smoothing: f64,
    }
}

impl ClassificationConfig {
    fn check(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(
                self.invalid(format!("label_smoothing must be in [0, 1), got {}", self.label_smoothing))
            );
        }
        if let Some((class, w)) =
            self.class_weights.iter().flatten().find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(self.invalid(format!("class_weights.{class} must be finite and > 0, got {w}")));
        }
        Ok(())
    }
}

crate::register_type!(Head, "classification");

#[typetag::serde(name = "classification")]
impl HeadConfig for ClassificationConfig {
    crate::head_config_methods!();

    fn stratify(&self) -> bool {
        true
    }

    /// The sorted set of the non-missing labels: `{"classes": [...]}`. A single
    /// class is allowed; no label at all is an error.
    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        self.check()?;
        let classes: BTreeSet<&str> = labels.iter().filter_map(|l| cell(*l)).collect();
        classes_state(&self.name, self.column(), classes.into_iter().collect())
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        self.check()?;
        let classes = class_list(&self.name, state)?;
        let class_weights = match &self.class_weights {
            None => None,
            Some(map) => {
                if let Some(unknown) = map.keys().find(|k| !classes.contains(k)) {
                    return Err(self.invalid(format!(
                        "class_weights names `{unknown}`, which is not a class; the classes are: {}",
                        classes.join(", ")
                    )));
                }
                Some(classes.iter().map(|c| map.get(c).copied().unwrap_or(1.0)).collect())
            }
        };
        let mlp = self.mlp(&path, in_dim, classes.len() as i64)?;
        Ok(Box::new(ClassificationHead {
            name: self.name.clone(),
            index: classes.iter().enumerate().map(|(i, c)| (c.clone(), i as i64)).collect(),
            classes,
            mlp,
            class_weights,
            label_smoothing: self.label_smoothing,
        }))
    }
}

/// A built classification head.
#[derive(Debug)]
pub struct ClassificationHead {
    name: String,
    classes: Vec<String>,
    index: HashMap<String, i64>,
    mlp: Mlp,
    class_weights: Option<Vec<f64>>,
    label_smoothing: f64,
}

impl ClassificationHead {
    fn invalid_input(&self, message: String) -> Error {
        Error::Invalid(format!("head `{}`: {message}", self.name))
    }
}

impl PropertyHead for ClassificationHead {
    fn name(&self) -> &str {
        &self.name
    }

    /// The class names; output column `k` is class `k`.
    fn classes(&self) -> Option<&[String]> {
        Some(&self.classes)
    }

    /// Logits, one column per class.
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, classes]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.mlp.forward_t(features, train).map_err(|e| self.invalid_input(format!("forward: {e}")))
    }

    /// Cross-entropy of the logits against class indices (mean over the rows,
    /// weighted by class weights when configured), with label smoothing.
    ///
    /// # Shapes
    /// `output`: `[M, K]`, `target`: `[M]` (or `[M, 1]`) class indices -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        if output.dim() != 2 {
            return Err(
                self.invalid_input(format!("loss: an output of shape {:?}, not [M, K]", output.size()))
            );
        }
        let run = || -> std::result::Result<Tensor, tch::TchError> {
            let target = target.f_reshape([-1])?.f_to_kind(Kind::Int64)?.f_to_device(output.device())?;
            let weight = match &self.class_weights {
                Some(w) => {
                    Some(Tensor::f_from_slice(w)?.f_to_kind(output.kind())?.f_to_device(output.device())?)
                }
                None => None,
            };
            // As `[1, K, M]` (the classes on dimension 1, the rows as a
            // spatial dimension): the same loss, with the softmax vectorised
            // over the rows (see `Mlp::COLUMN_MAJOR_OUT`), and no copy when
            // the output came output-major.
            output.f_tr()?.f_unsqueeze(0)?.f_cross_entropy_loss(
                &target.f_unsqueeze(0)?,
                weight.as_ref(),
                Reduction::Mean,
                -100,
                self.label_smoothing,
            )
        };
        run().map_err(|e| self.invalid_input(format!("loss: {e}")))
    }

    /// Class indices (`[N]`, Int64); an unknown class is an [`Error::Label`]
    /// naming it and the known classes.
    fn encode(&self, labels: &Labels) -> Result<Targets> {
        encode_cells(labels, |index, l| {
            self.index.get(l).copied().ok_or_else(|| Error::Label {
                index,
                message: format!(
                    "head `{}`: unknown class `{l}`; the known classes are: {}",
                    self.name,
                    self.classes.join(", ")
                ),
            })
        })
    }

    /// The softmax of the logits.
    fn probabilities(&self, output: &Tensor) -> Result<Option<Tensor>> {
        let run =
            || output.detach().f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_softmax(-1, Kind::Double);
        let probs = run().map_err(|e| self.invalid_input(format!("probabilities: {e}")))?;
        match probs.size().as_slice() {
            [_, k] if *k == self.classes.len() as i64 => Ok(Some(probs)),
            dims => Err(self.invalid_input(format!(
                "an output of shape {dims:?}, not [N, {}] (one column per class)",
                self.classes.len()
            ))),
        }
    }

    /// The most probable class and its softmax probability.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        let Some(probs) = self.probabilities(output)? else { return Ok(Vec::new()) };
        let (best, arg) =
            probs.f_max_dim(-1, false).map_err(|e| self.invalid_input(format!("decode: {e}")))?;
        let arg = Vec::<i64>::try_from(&arg).map_err(|e| self.invalid_input(format!("decode: {e}")))?;
        let mut predictions = Vec::with_capacity(arg.len());
        for (probability, k) in to_vec_f64(&best).into_iter().zip(arg) {
            let label = self.classes.get(k as usize).cloned().unwrap_or_default();
            predictions.push(Prediction::Class { label, probability });
        }
        Ok(predictions)
    }

    /// Error rate, accuracy, confusion matrix, per-class precision, recall
    /// and F1, macro F1 and `n` ([`metrics::classification`]); a true label
    /// outside the known classes counts as wrong.
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        if predictions.len() != labels.len() {
            return Err(self.invalid_input(format!(
                "{} predictions for {} labels",
                predictions.len(),
                labels.len()
            )));
        }
        let mut pairs = Vec::new();
        let mut correct = Vec::with_capacity(labels.len());
        for (index, (p, l)) in predictions.iter().zip(labels).enumerate() {
            let Some(truth) = cell(*l) else {
                correct.push(None);
                continue;
            };
            let Prediction::Class { label, .. } = p else {
                return Err(self.invalid_input(format!("prediction {index} is not a class: {p:?}")));
            };
            correct.push(Some(truth == label));
            pairs.push((truth, label.as_str()));
        }
        let m = metrics::classification(&self.classes, &pairs);
        Ok(HeadScore {
            error_rate: m.error_rate,
            correct,
            metrics: HeadMetrics { classes: Some(m), ..HeadMetrics::default() },
        })
    }
}
