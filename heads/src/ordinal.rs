//! The `ordinal` head: ordered classes (volume-fraction bins, grades) with a
//! cumulative-link head in the style of CORAL (Cao, Mirjalili and Raschka,
//! 2020).
//!
//! ```toml
//! [[heads]]
//! type = "ordinal"
//! name = "fraction_bin"
//! column = "fraction_bin"   # default: the name
//! weight = 1.0              # weight in the total loss
//! hidden = []               # hidden layer widths; empty: one linear layer
//! dropout = 0.0             # after each hidden layer, while training
//! ```
//!
//! **Order.** [`fit`](HeadConfig::fit) collects the distinct labels; when every
//! one parses as a number they are ordered by value (so `"0.1" < "0.25" <
//! "1e0"`), otherwise sorted as text. The ordered list is the head's
//! [`HeadState`], `{"classes": [...]}`.
//!
//! **Model.** For `K` classes the network computes one score `g(x)` (an
//! [`Mlp`] with a single output) and `K - 1` logits `g(x) + b_k`, where `b_k`
//! is the logit of `P(y > k)`. The biases are kept strictly decreasing
//! (`b_k = b_0 - Σ_{j≤k} softplus(d_j)`), so the cumulative probabilities are
//! ordered for every input and the decoded rank never contradicts them. With a
//! single class the head still outputs one (unused) logit; its loss is zero.
//!
//! **Loss.** Binary cross-entropy of each logit against `y > k`, summed over
//! the `K - 1` thresholds and averaged over the samples.
//!
//! **Decoding.** The rank is the number of thresholds with `P(y > k) > 0.5`;
//! its probability is `P(y > rank - 1) - P(y > rank)`.

use std::collections::{BTreeSet, HashMap};

use furcate_core::head::{
    encode_cells, HeadConfig, HeadScore, HeadState, Labels, Prediction, PropertyHead, Targets,
};
use furcate_core::metrics;
use furcate_core::model::Mlp;
use furcate_core::{Error, Result};
use tch::{nn, Kind, Reduction, Tensor};

use furcate_core::head::{cell, class_list, classes_state};
use furcate_core::metrics::{BinMetrics, HeadMetrics};
use furcate_core::model::to_vec_f64;

furcate_core::head_config! {
    /// The `[[heads]]` table of `type = "ordinal"`: only the fields every head
    /// has (its `hidden` layers come before the shared score).
    pub struct OrdinalConfig {}
}

/// Orders distinct labels: by numeric value when all parse as finite numbers
/// (ties between spellings of one number broken by text), else as text.
///
/// ```
/// assert_eq!(furcate_heads::ordinal::order_classes(["10", "9", "0.5"]), ["0.5", "9", "10"]);
/// assert_eq!(furcate_heads::ordinal::order_classes(["b", "a", "10"]), ["10", "a", "b"]);
/// ```
pub fn order_classes<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.into_iter().collect();
    let numbers: Option<Vec<(f64, &str)>> =
        set.iter().map(|l| l.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| (v, *l))).collect();
    match numbers {
        Some(mut n) => {
            n.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            n.into_iter().map(|(_, l)| l.to_string()).collect()
        }
        None => set.into_iter().map(str::to_string).collect(),
    }
}

furcate_core::register_type!(Head, "ordinal");

#[typetag::serde(name = "ordinal")]
impl HeadConfig for OrdinalConfig {
    furcate_core::head_config_methods!();

    fn stratify(&self) -> bool {
        true
    }

    /// The ordered set of the non-missing labels: `{"classes": [...]}`. A
    /// single class is allowed; no label at all is an error.
    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        classes_state(&self.name, self.column(), order_classes(labels.iter().filter_map(|l| cell(*l))))
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        let classes = class_list(&self.name, state)?;
        let mlp = self.mlp(&path, in_dim, 1)?;
        let thresholds = (classes.len() as i64 - 1).max(1);
        // Biases start evenly spaced one logit apart, centred on zero.
        let first = path.var("first_bias", &[1], nn::Init::Const((thresholds - 1) as f64 / 2.0));
        let gaps = path.var("bias_gaps", &[thresholds - 1], nn::Init::Const(1f64.exp_m1().ln()));
        Ok(Box::new(OrdinalHead {
            name: self.name.clone(),
            index: classes.iter().enumerate().map(|(i, c)| (c.clone(), i as i64)).collect(),
            classes,
            mlp,
            first,
            gaps,
        }))
    }
}

/// A built ordinal head.
#[derive(Debug)]
pub struct OrdinalHead {
    name: String,
    classes: Vec<String>,
    index: HashMap<String, i64>,
    mlp: Mlp,
    first: Tensor,
    gaps: Tensor,
}

impl OrdinalHead {
    /// The classes in their order; class `k` is rank `k`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The threshold biases `b_k`, strictly decreasing.
    ///
    /// # Shapes
    /// `[max(K - 1, 1)]`.
    pub fn biases(&self) -> Tensor {
        let steps = self.gaps.softplus().cumsum(0, self.gaps.kind());
        Tensor::cat(&[self.first.shallow_clone(), &self.first - steps], 0)
    }

    fn invalid(&self, message: String) -> Error {
        Error::Invalid(format!("head `{}`: {message}", self.name))
    }
}

/// Ranks and their probabilities from cumulative logits (`P(y > k)` = sigmoid).
///
/// The rank is the number of `P(y > k)` above 0.5; the probability is
/// `P(y > rank - 1) - P(y > rank)` (with `P(y > -1) = 1`, `P(y > K - 1) = 0`),
/// clamped to `[0, 1]`.
///
/// # Shapes
/// `logits`: `[N, T]` -> `N` pairs, ranks in `0..=T`.
pub fn decode_ranks(logits: &Tensor) -> Vec<(usize, f64)> {
    let size = logits.size();
    let (n, t) = match size.as_slice() {
        [n, t] => (*n as usize, *t as usize),
        _ => return Vec::new(),
    };
    let p = to_vec_f64(&logits.sigmoid());
    (0..n)
        .map(|i| {
            let row = &p[i * t..(i + 1) * t];
            let rank = row.iter().filter(|q| **q > 0.5).count();
            let above = if rank == 0 { 1.0 } else { row[rank - 1] };
            let beyond = row.get(rank).copied().unwrap_or(0.0);
            (rank, (above - beyond).clamp(0.0, 1.0))
        })
        .collect()
}

impl PropertyHead for OrdinalHead {
    fn name(&self) -> &str {
        &self.name
    }

    /// The class names in order; rank `k` is class `k`.
    fn classes(&self) -> Option<&[String]> {
        Some(&self.classes)
    }

    /// Cumulative logits `g(x) + b_k`, one per threshold (logit of `P(y > k)`).
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, max(K - 1, 1)]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let g = self.mlp.forward_t(features, train).map_err(|e| self.invalid(format!("forward: {e}")))?;
        let b = self.biases().to_kind(g.kind()).to_device(g.device());
        Ok(g + b.unsqueeze(0))
    }

    /// Binary cross-entropy of each cumulative logit against `y > k`, summed
    /// over thresholds, mean over rows; zero (attached) with a single class.
    ///
    /// # Shapes
    /// `output`: `[M, T]`, `target`: `[M]` (or `[M, 1]`) class indices -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        let [m, t] = output.size()[..] else {
            return Err(self.invalid(format!("loss: an output of shape {:?}, not [M, T]", output.size())));
        };
        if self.classes.len() < 2 {
            return Ok(output.f_sum(Kind::Float)?.f_mul_scalar(0.0)?);
        }
        let run = || -> std::result::Result<Tensor, tch::TchError> {
            let target = target.f_reshape([-1, 1])?.f_to_device(output.device())?.f_to_kind(Kind::Int64)?;
            let ks = Tensor::f_arange(t, (Kind::Int64, output.device()))?.f_unsqueeze(0)?;
            let levels = target.f_gt_tensor(&ks)?.f_to_kind(output.kind())?;
            output
                .f_binary_cross_entropy_with_logits::<Tensor>(&levels, None, None, Reduction::Sum)?
                .f_div_scalar(m.max(1) as f64)
        };
        run().map_err(|e| self.invalid(format!("loss: {e}")))
    }

    /// Class indices in the order of [`classes`](OrdinalHead::classes) (`[N]`,
    /// Int64); an unknown class is an [`Error::Label`].
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

    /// The rank's class and its probability (see [`decode_ranks`]).
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        if output.size().len() != 2 {
            return Err(self.invalid(format!("decode: an output of shape {:?}, not [N, T]", output.size())));
        }
        let last = self.classes.len() - 1;
        Ok(decode_ranks(output)
            .into_iter()
            .map(|(rank, probability)| {
                let (rank, probability) = if last == 0 { (0, 1.0) } else { (rank.min(last), probability) };
                Prediction::Class { label: self.classes[rank].clone(), probability }
            })
            .collect())
    }

    /// Everything of [`metrics::classification`] (error rate, accuracy,
    /// confusion matrix, per-class and macro F1), plus `mean_abs_bin_error`:
    /// the mean of `|true rank - predicted rank|`. A true label outside the
    /// known classes counts as wrong, is left out of the bin error and is
    /// counted in `unknown_labels`.
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        if predictions.len() != labels.len() {
            return Err(self.invalid(format!(
                "{} predictions for {} labels",
                predictions.len(),
                labels.len()
            )));
        }
        let mut pairs = Vec::new();
        let mut correct = Vec::with_capacity(labels.len());
        let (mut bin_error, mut binned, mut unknown) = (0.0, 0usize, 0usize);
        for (index, (p, l)) in predictions.iter().zip(labels).enumerate() {
            let Some(truth) = cell(*l) else {
                correct.push(None);
                continue;
            };
            let Prediction::Class { label, .. } = p else {
                return Err(self.invalid(format!("prediction {index} is not a class: {p:?}")));
            };
            correct.push(Some(truth == label));
            pairs.push((truth, label.as_str()));
            match (self.index.get(truth), self.index.get(label.as_str())) {
                (Some(t), Some(p)) => {
                    bin_error += (t - p).abs() as f64;
                    binned += 1;
                }
                (None, _) => unknown += 1,
                (Some(_), None) => {
                    return Err(self.invalid(format!("prediction {index} is an unknown class `{label}`")))
                }
            }
        }
        let m = metrics::classification(&self.classes, &pairs);
        let bins = BinMetrics {
            mean_abs_bin_error: (binned > 0).then(|| bin_error / binned as f64),
            unknown_labels: unknown as u64,
        };
        let error_rate = m.error_rate;
        let metrics = HeadMetrics { classes: Some(m), bins: Some(bins), ..HeadMetrics::default() };
        Ok(HeadScore { error_rate, correct, metrics })
    }
}
