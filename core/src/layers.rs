//! The layers the trunk and the heads are built of: [`Mlp`] (linear layers
//! with an [`Activation`] and dropout) and [`to_vec_f64`] for reading outputs.
//! A leaf of the data path: [`crate::head`] and [`crate::model`] both use it.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::{Error, Result};

/// The non-linearity after each hidden layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// Gaussian error linear unit (exact, erf-based).
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// None: the layer stays linear (`activation = "none"`).
    #[serde(rename = "none")]
    Identity,
}

impl Activation {
    /// Applies the activation element-wise.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.f_relu()?,
            Activation::Gelu => x.f_gelu("none")?,
            Activation::Tanh => x.f_tanh()?,
            Activation::Identity => x.shallow_clone(),
        })
    }
}

/// A stack of linear layers, each followed by an activation and dropout, with
/// an optional final linear layer without either. The building block of the
/// trunk and of the built-in heads; heads written elsewhere may use it too.
///
/// Hidden layer `i` is named `<prefix><i>` under the path, the final layer `out`.
///
/// ```
/// use furcate_core::layers::{Activation, Mlp};
/// use tch::{nn, Device, Kind, Tensor};
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let mlp = Mlp::new(&vs.root(), 6, &[4], "hidden", Activation::Relu, 0.0)?.with_output(&vs.root(), 2)?;
/// assert_eq!(mlp.forward_t(&Tensor::zeros([3, 6], (Kind::Float, Device::Cpu)), false)?.size(), [3, 2]);
/// // Features of the wrong width are an error, not a panic.
/// assert!(mlp.forward_t(&Tensor::zeros([3, 5], (Kind::Float, Device::Cpu)), false).is_err());
/// assert!(vs.variables().contains_key("hidden0.weight"));
/// assert!(vs.variables().contains_key("out.bias"));
/// # Ok::<(), furcate_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Mlp {
    hidden: Vec<nn::Linear>,
    out: Option<nn::Linear>,
    activation: Activation,
    dropout: f64,
    out_dim: i64,
}

impl Mlp {
    /// Builds `hidden.len()` linear layers under `p`, named `<prefix>0`,
    /// `<prefix>1`, ... Errors on a non-positive width or a dropout outside
    /// `[0, 1)`.
    pub fn new(
        p: &nn::Path,
        in_dim: i64,
        hidden: &[i64],
        prefix: &str,
        activation: Activation,
        dropout: f64,
    ) -> Result<Mlp> {
        if in_dim <= 0 {
            return Err(Error::Invalid(format!("input width must be positive, got {in_dim}")));
        }
        if let Some(bad) = hidden.iter().find(|w| **w <= 0) {
            return Err(Error::Invalid(format!("layer widths must be positive, got {bad} in {hidden:?}")));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Invalid(format!("dropout must be in [0, 1), got {dropout}")));
        }
        let mut width = in_dim;
        let mut layers = Vec::with_capacity(hidden.len());
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(nn::linear(p / format!("{prefix}{i}"), width, h, Default::default()));
            width = h;
        }
        Ok(Mlp { hidden: layers, out: None, activation, dropout, out_dim: width })
    }

    /// Adds a final linear layer `p / "out"` of width `k` (no activation, no
    /// dropout after it). Errors on a non-positive `k`.
    pub fn with_output(mut self, p: &nn::Path, k: i64) -> Result<Mlp> {
        if k <= 0 {
            return Err(Error::Invalid(format!("output width must be positive, got {k}")));
        }
        self.out = Some(nn::linear(p / "out", self.out_dim, k, Default::default()));
        self.out_dim = k;
        Ok(self)
    }

    /// The one linear layer of an MLP without hidden layers; `None` otherwise.
    pub fn single_linear(&self) -> Option<&nn::Linear> {
        self.out.as_ref().filter(|_| self.hidden.is_empty())
    }

    /// Width of the output.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// Runs the layers; dropout only when `train`. Input of the wrong width
    /// (or any other libtorch failure) is an [`Error::Torch`].
    ///
    /// A final layer of 2 to [`Mlp::COLUMN_MAJOR_OUT`] outputs is computed
    /// output-major (see there): the result is then a transposed view, with
    /// the rows as its fastest dimension. Call `contiguous` before `view`.
    ///
    /// # Shapes
    /// `[N, in_dim]` -> `[N, out_dim]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let linear = |l: &nn::Linear, x: &Tensor| x.f_linear(&l.ws, l.bs.as_ref());
        let mut x = x.shallow_clone();
        for layer in &self.hidden {
            x = self.activation.apply(&linear(layer, &x)?)?;
            if self.dropout > 0.0 {
                x = x.f_dropout(self.dropout, train)?;
            }
        }
        Ok(match &self.out {
            Some(out) if (2..=Self::COLUMN_MAJOR_OUT).contains(&self.out_dim) => {
                // `W x^T (+ b)`, `[K, N]`, handed out as its transpose.
                let t = match &out.bs {
                    Some(b) => b.f_unsqueeze(1)?.f_addmm(&out.ws, &x.f_tr()?)?,
                    None => out.ws.f_matmul(&x.f_tr()?)?,
                };
                t.f_tr()?
            }
            Some(out) => linear(out, &x)?,
            None => x,
        })
    }

    /// The widest final layer computed output-major, as `W x^T`: one output
    /// after another, each over all the rows. A few outputs (a class head's
    /// classes) are narrower than a CPU's vector, so the usual row-major
    /// product and a softmax over them run mostly scalar, one row at a time;
    /// output-major, both run vectorised over the rows, and a loss can read
    /// `[K, N]` without a copy (the classification head's does). Measured
    /// with libtorch 2.11 on 2 cores of an AMD EPYC (MKL), a linear layer
    /// plus cross-entropy, forward and backward, on 3150 rows of 144
    /// features: 2.5x faster for 7 classes, 2-3.8x for 3-15, within 7 %
    /// either way for 16-32, and 1.1-1.5x slower from 64 classes up.
    pub const COLUMN_MAJOR_OUT: i64 = 32;
}

/// `t` as a flat `Vec<f64>` on the CPU (NaN where it cannot be read); for
/// heads' [`decode`](crate::PropertyHead::decode) and scores.
pub fn to_vec_f64(t: &Tensor) -> Vec<f64> {
    let flat = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Double).reshape([-1]);
    Vec::<f64>::try_from(&flat).unwrap_or_else(|_| vec![f64::NAN; flat.numel()])
}
