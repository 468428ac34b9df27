//! A furcate head plugin: classification with the focal loss of Lin et al.
//! (2017), `-(1 - p_t)^gamma * log p_t`, which down-weights the samples the
//! head already gets right and so helps with rare classes.
//!
//! ```toml
//! plugins = ["target/debug/libfurcate_plugin_example.so"]
//! [[heads]]
//! type = "focal"
//! name = "morphology"
//! gamma = 2.0        # 0 gives plain cross-entropy
//! ```
#![deny(missing_docs)]

use furcate_plugin::furcate_core::metrics::HeadMetrics;
use furcate_plugin::prelude::*;

/// The `[[heads]]` table of `type = "focal"`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocalConfig {
    /// Head name, also the label column.
    pub name: String,
    /// Focusing exponent (default 2).
    #[serde(default = "two")]
    pub gamma: f64,
}

fn two() -> f64 {
    2.0
}

#[typetag::serde(name = "focal")]
impl HeadConfig for FocalConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn stratify(&self) -> bool {
        true
    }

    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        let mut classes: Vec<&str> =
            labels.iter().flatten().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
        classes.sort();
        classes.dedup();
        match classes.len() {
            0 => Err(Error::Invalid(format!("head `{}` has no labels", self.name))),
            _ => Ok(furcate_plugin::serde_json::json!({ "classes": classes })),
        }
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        let classes: Vec<String> = furcate_plugin::serde_json::from_value(state["classes"].clone())
            .map_err(|e| Error::Invalid(format!("head `{}`: bad state: {e}", self.name)))?;
        let out = nn::linear(&path / "out", in_dim, classes.len() as i64, Default::default());
        Ok(Box::new(FocalHead { name: self.name.clone(), gamma: self.gamma, classes, out }))
    }
}

struct FocalHead {
    name: String,
    gamma: f64,
    classes: Vec<String>,
    out: nn::Linear,
}

impl PropertyHead for FocalHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, features: &Tensor, _train: bool) -> Tensor {
        self.out.forward(features)
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> Tensor {
        let log_p = output.log_softmax(-1, Kind::Float).gather(1, &target.unsqueeze(1), false).squeeze_dim(1);
        let weight = (-log_p.exp() + 1.0).pow_tensor_scalar(self.gamma);
        (-(weight * log_p)).mean(Kind::Float)
    }

    fn encode(&self, labels: &Labels) -> Result<Targets> {
        encode_cells(labels, |index, l| match self.classes.iter().position(|c| c == l) {
            Some(k) => Ok(k as i64),
            None => {
                Err(Error::Label { index, message: format!("class `{l}` was not in the training labels") })
            }
        })
    }

    fn decode(&self, output: &Tensor) -> Vec<Prediction> {
        let (p, k) = output.softmax(-1, Kind::Float).max_dim(1, false);
        let (p, k) = (Vec::<f64>::try_from(p.to_kind(Kind::Double)), Vec::<i64>::try_from(k));
        let (p, k) = (p.unwrap_or_default(), k.unwrap_or_default());
        let class = |k: i64| self.classes[k as usize].clone();
        k.into_iter()
            .zip(p)
            .map(|(k, probability)| Prediction::Class { label: class(k), probability })
            .collect()
    }

    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        let pairs: Vec<(&str, &str)> = predictions
            .iter()
            .zip(labels)
            .filter_map(|(p, l)| match (p, l.map(str::trim).filter(|l| !l.is_empty())) {
                (Prediction::Class { label, .. }, Some(truth)) => Some((truth, label.as_str())),
                _ => None,
            })
            .collect();
        let m = furcate_plugin::furcate_core::metrics::classification(&self.classes, &pairs);
        let correct = labels.iter().zip(predictions).map(|(l, p)| correct(*l, p)).collect();
        let error_rate = m.error_rate;
        let metrics = HeadMetrics { classes: Some(m), ..HeadMetrics::default() };
        Ok(HeadScore { error_rate, correct, metrics })
    }
}

fn correct(label: Option<&str>, p: &Prediction) -> Option<bool> {
    let truth = label.map(str::trim).filter(|l| !l.is_empty())?;
    Some(matches!(p, Prediction::Class { label, .. } if label == truth))
}

fn register(r: &mut dyn Registrar) {
    r.head::<FocalConfig>("focal");
}

furcate_plugin::export_plugin!(register);
