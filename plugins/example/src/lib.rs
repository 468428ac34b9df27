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
//! # fail = "panic_in_forward"   # for tests: fail on purpose (see `Fail`)
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
    /// Fail on purpose, to test how furcate takes a failing plugin head
    /// (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<Fail>,
}

/// Where and how a focal head fails on purpose (`fail = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fail {
    /// `forward` panics.
    PanicInForward,
    /// `forward` returns an error.
    ErrorInForward,
    /// `loss` panics.
    PanicInLoss,
    /// `decode` panics.
    PanicInDecode,
    /// `decode` returns an error.
    ErrorInDecode,
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
        Ok(Box::new(FocalHead { name: self.name.clone(), gamma: self.gamma, classes, out, fail: self.fail }))
    }
}

struct FocalHead {
    name: String,
    gamma: f64,
    classes: Vec<String>,
    out: nn::Linear,
    fail: Option<Fail>,
}

impl FocalHead {
    /// Panics in `call` when the configured failure is `panic`, returns an
    /// error when it is `error`.
    fn fail_if(&self, panic: Fail, error: Option<Fail>, call: &str) -> Result<()> {
        match self.fail {
            Some(f) if f == panic => panic!("focal head `{}`: {call} fails on purpose", self.name),
            Some(f) if Some(f) == error => {
                Err(Error::Invalid(format!("focal head `{}`: {call} fails on purpose", self.name)))
            }
            _ => Ok(()),
        }
    }
}

impl PropertyHead for FocalHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, features: &Tensor, _train: bool) -> Result<Tensor> {
        self.fail_if(Fail::PanicInForward, Some(Fail::ErrorInForward), "forward")?;
        Ok(features.f_linear(&self.out.ws, self.out.bs.as_ref())?)
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        self.fail_if(Fail::PanicInLoss, None, "loss")?;
        let log_p = output
            .f_log_softmax(-1, Kind::Float)?
            .f_gather(1, &target.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?;
        let weight = (-log_p.exp() + 1.0).pow_tensor_scalar(self.gamma);
        Ok((-(weight * log_p)).mean(Kind::Float))
    }

    fn encode(&self, labels: &Labels) -> Result<Targets> {
        encode_cells(labels, |index, l| match self.classes.iter().position(|c| c == l) {
            Some(k) => Ok(k as i64),
            None => {
                Err(Error::Label { index, message: format!("class `{l}` was not in the training labels") })
            }
        })
    }

    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        self.fail_if(Fail::PanicInDecode, Some(Fail::ErrorInDecode), "decode")?;
        let (p, k) = output.f_softmax(-1, Kind::Float)?.f_max_dim(1, false)?;
        let (p, k) = (Vec::<f64>::try_from(p.f_to_kind(Kind::Double)?)?, Vec::<i64>::try_from(k)?);
        let class = |k: i64| self.classes.get(k as usize).cloned().unwrap_or_default();
        Ok(k.into_iter()
            .zip(p)
            .map(|(k, probability)| Prediction::Class { label: class(k), probability })
            .collect())
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
