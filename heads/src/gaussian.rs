//! The `gaussian` head: regression that predicts a mean and a variance per
//! sample, trained with the Gaussian negative log-likelihood, so that every
//! prediction comes with an interval.
//!
//! ```toml
//! [[heads]]
//! type = "gaussian"
//! name = "fraction"
//! column = "fraction"     # default: the name
//! weight = 1.0            # weight in the total loss
//! hidden = []             # hidden layer widths; empty: one linear layer
//! dropout = 0.0           # after each hidden layer, while training
//! standardise = true      # learn (value - mean) / std
//! ```
//!
//! **Scaling.** As the built-in `regression` head (whose
//! [`fit`](HeadConfig::fit) it reuses): the state is `{"mean": .., "std": ..}`
//! of the training targets, a zero std (constant targets) stored as 1, and with
//! `standardise = true` the head learns `(value - mean) / std`.
//!
//! **Output and loss.** Two columns, the mean `μ` and the log-variance `s`
//! (clamped to `[-12, 12]` in the loss and when decoding), in learned units.
//! The loss is the Gaussian NLL without its constant, as PyTorch's
//! `gaussian_nll_loss(full=False)`: `mean over rows of ½ (s + (y - μ)² e^{-s})`.
//!
//! **Decoding.** `value = μ · std + mean`, and the predicted standard deviation
//! `e^{s/2} · std`, in data units.
//!
//! **Scores.** MAE, RMSE, R², max error and `n` ([`metrics::regression`]),
//! plus `coverage_90`, the fraction of labels inside the central 90 % interval
//! `value ± 1.6449 std`, `mean_interval_width_90`, and `nll`, the mean full
//! Gaussian negative log-likelihood in data units.

use furcate_core::head::regression::{scaling, RegressionConfig};
use furcate_core::head::{
    encode_cells, HeadConfig, HeadScore, HeadState, Labels, Prediction, PropertyHead, Targets,
};
use furcate_core::metrics;
use furcate_core::model::Mlp;
use furcate_core::{Error, Result};
use tch::{nn, Tensor};

use furcate_core::head::cell;
use furcate_core::metrics::{HeadMetrics, IntervalMetrics};
use furcate_core::model::to_vec_f64;

use crate::yes;

/// The 95 % quantile of the standard normal: the central 90 % interval is `μ ± Z90 σ`.
pub const Z90: f64 = 1.644_853_626_951_472_2;

/// Bounds on the predicted log-variance, in learned units.
const LOG_VAR_RANGE: (f64, f64) = (-12.0, 12.0);

furcate_core::head_config! {
    /// The `[[heads]]` table of `type = "gaussian"`.
    pub struct GaussianConfig {
        /// Learn standardised targets (default true).
        #[serde(default = "yes")]
        pub standardise: bool,
    }
}

/// Parses a label as a finite number.
fn parse(head: &str, index: usize, label: &str) -> Result<f64> {
    label.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| Error::Label {
        index,
        message: format!("head `{head}`: label `{label}` is not a finite number"),
    })
}

furcate_core::register_type!(Head, "gaussian");

#[typetag::serde(name = "gaussian")]
impl HeadConfig for GaussianConfig {
    furcate_core::head_config_methods!();

    /// Mean and population standard deviation of the non-missing labels
    /// (`{"mean": .., "std": ..}`, a zero std stored as 1), as the
    /// `regression` head.
    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        let regression =
            RegressionConfig { column: self.column.clone(), ..RegressionConfig::new(&self.name) };
        regression.fit(labels)
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        let (shift, scale) = scaling(&self.name, state, self.standardise)?;
        let mlp = self.mlp(&path, in_dim, 2)?;
        Ok(Box::new(GaussianHead { name: self.name.clone(), mlp, shift, scale }))
    }
}

/// A built gaussian head.
#[derive(Debug)]
pub struct GaussianHead {
    name: String,
    mlp: Mlp,
    shift: f64,
    scale: f64,
}

impl GaussianHead {
    fn invalid(&self, message: String) -> Error {
        Error::Invalid(format!("head `{}`: {message}", self.name))
    }

    /// `(shift, scale)`: the head learns `(value - shift) / scale`.
    pub fn scaling(&self) -> (f64, f64) {
        (self.shift, self.scale)
    }
}

/// The Gaussian NLL without its constant, mean over rows: `½ (s + (y - μ)² e^{-s})`
/// with `s` the log-variance clamped to `[-12, 12]`.
///
/// # Shapes
/// `output`: `[M, 2]` (`μ`, `s`), `target`: `[M]` or `[M, 1]` -> scalar. Other
/// shapes are an error.
pub fn gaussian_nll(output: &Tensor, target: &Tensor) -> Result<Tensor> {
    if !matches!(output.size().as_slice(), [_, 2]) {
        return Err(Error::Invalid(format!("gaussian_nll: output must be [M, 2], got {:?}", output.size())));
    }
    let target = target.f_to_kind(output.kind())?.f_to_device(output.device())?.f_reshape([-1])?;
    let mu = output.f_select(1, 0)?;
    let log_var = output.f_select(1, 1)?.f_clamp(LOG_VAR_RANGE.0, LOG_VAR_RANGE.1)?;
    let sq = target.f_sub(&mu)?.f_square()?;
    Ok(log_var.f_add(&sq.f_mul(&log_var.f_neg()?.f_exp()?)?)?.f_mul_scalar(0.5)?.f_mean(output.kind())?)
}

impl PropertyHead for GaussianHead {
    fn name(&self) -> &str {
        &self.name
    }

    /// Mean and log-variance in learned units.
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, 2]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.mlp.forward_t(features, train).map_err(|e| self.invalid(format!("forward: {e}")))
    }

    /// [`gaussian_nll`].
    ///
    /// # Shapes
    /// `output`: `[M, 2]`, `target`: `[M, 1]` or `[M]` -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        gaussian_nll(output, target).map_err(|e| self.invalid(format!("loss: {e}")))
    }

    /// Parsed and scaled values (`[N, 1]`, Float); a label that is not a
    /// finite number is an [`Error::Label`].
    fn encode(&self, labels: &Labels) -> Result<Targets> {
        let t = encode_cells(labels, |index, l| {
            Ok(((parse(&self.name, index, l)? - self.shift) / self.scale) as f32)
        })?;
        Ok(Targets { values: t.values.reshape([-1, 1]), mask: t.mask })
    }

    /// Values and standard deviations in data units.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        if !matches!(output.size().as_slice(), [_, 2]) {
            return Err(self.invalid(format!("an output of shape {:?}, not [N, 2]", output.size())));
        }
        let v = to_vec_f64(output);
        Ok(v.chunks_exact(2)
            .map(|row| {
                let log_var = row[1].clamp(LOG_VAR_RANGE.0, LOG_VAR_RANGE.1);
                Prediction::Value {
                    value: row[0] * self.scale + self.shift,
                    std: Some((0.5 * log_var).exp() * self.scale),
                }
            })
            .collect())
    }

    /// See the module's "Scores"; `correct` is `None` (no notion of right).
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        let invalid = |m: String| Error::Invalid(format!("head `{}`: {m}", self.name));
        if predictions.len() != labels.len() {
            return Err(invalid(format!("{} predictions for {} labels", predictions.len(), labels.len())));
        }
        let mut pairs = Vec::new();
        let (mut inside, mut width, mut nll) = (0usize, 0.0, 0.0);
        for (index, (p, l)) in predictions.iter().zip(labels).enumerate() {
            let Some(l) = cell(*l) else { continue };
            let truth = parse(&self.name, index, l)?;
            let Prediction::Value { value, std: Some(std) } = p else {
                return Err(invalid(format!("prediction {index} is not a value with a std: {p:?}")));
            };
            let z = (truth - value) / std;
            inside += usize::from(z.abs() <= Z90);
            width += 2.0 * Z90 * std;
            nll += 0.5 * (2.0 * std::f64::consts::PI).ln() + std.ln() + 0.5 * z * z;
            pairs.push((truth, *value));
        }
        let n = pairs.len();
        let of_n = |x: f64| (n > 0).then(|| x / n as f64);
        let interval = IntervalMetrics {
            coverage_90: of_n(inside as f64),
            mean_interval_width_90: of_n(width),
            nll: of_n(nll),
        };
        let metrics = HeadMetrics {
            values: Some(metrics::regression(&pairs, None)),
            interval: Some(interval),
            ..HeadMetrics::default()
        };
        Ok(HeadScore { error_rate: None, correct: vec![None; labels.len()], metrics })
    }
}
