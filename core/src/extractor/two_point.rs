//! The `two_point` extractor: two-point statistics of the phase indicator, the
//! classical microstructure descriptor of PyMKS and PoreSpy. No weights.
//!
//! ```toml
//! [extractor]
//! type = "two_point"
//! size = 128          # side of the square input, at least 32
//! threshold = 0.5     # a pixel whose grey value is above it is phase 1
//! window = 16         # largest lag r (pixels) kept, 2r + 1 <= size
//! stride = 2          # lags kept: multiples of the stride
//! periodic = false    # true: wrap around; false: zero padding, overlap-normalised
//! ```
//!
//! **Indicator.** The image is made grey (mean of its channels) and
//! thresholded: `I(p) = 1` where the pixel is above `threshold`, else 0, so a
//! binary image in `{0, 1}` is used as it is.
//!
//! **Autocorrelation.** `S2(d) = Σ_p I(p) I(p + d) / count(d)`, the probability
//! that two pixels `d` apart are both phase 1, computed with real FFTs
//! (`rfft2`, `|·|²`, `irfft2`). With `periodic = true` the image wraps around
//! and `count(d)` is the pixel count; with `periodic = false` the image is
//! zero-padded to twice its side and `count(d)` is the number of pixel pairs
//! that lie inside the image at that lag. `S2(0)` is the phase fraction.
//!
//! **Pooling.** Of the window `|dy|, |dx| <= window` the lags on the grid of
//! `stride` are kept: `dy, dx ∈ {-m s, …, 0, …, m s}` with `m = ⌊window / stride⌋`.
//! As `S2(d) = S2(-d)`, only the half-plane `dy > 0 or (dy = 0 and dx > 0)` is
//! kept, in row-major order ([`lags`]); feature 0 is the phase fraction. The
//! width is `1 + ((2m + 1)² - 1) / 2` (145 at the defaults).
//!
//! ```
//! use furcate_core::extractor::two_point::TwoPointConfig;
//! use furcate_core::{BuildContext, ExtractorConfig};
//! use tch::{Device, Kind, Tensor};
//!
//! let config = TwoPointConfig { size: 32, window: 4, ..TwoPointConfig::default() };
//! let extractor = config.build(&BuildContext::default())?;
//! let features = extractor.extract(&Tensor::ones([2, 1, 32, 32], (Kind::Float, Device::Cpu)))?;
//! assert_eq!(features.size(), [2, extractor.output_dim()]);
//! assert_eq!(features.double_value(&[0, 0]), 1.0); // all phase 1
//! # Ok::<(), furcate_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{BuildContext, ExtractorConfig, FeatureExtractor, InputSpec, Normalisation};
use crate::{Error, Result};

fn default_size() -> i64 {
    128
}
fn default_threshold() -> f64 {
    0.5
}
fn default_window() -> i64 {
    16
}
fn default_stride() -> i64 {
    2
}

/// The `[extractor]` table of `type = "two_point"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoPointConfig {
    /// Side of the square input images in pixels, at least 32 (default 128).
    #[serde(default = "default_size")]
    pub size: i64,
    /// Grey level above which a pixel is phase 1 (default 0.5).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Largest lag kept, in pixels; `2 window + 1 <= size` (default 16).
    #[serde(default = "default_window")]
    pub window: i64,
    /// Spacing of the lags kept, in pixels, at most `window` (default 2).
    #[serde(default = "default_stride")]
    pub stride: i64,
    /// Wrap around the image edges instead of zero padding (default false).
    #[serde(default)]
    pub periodic: bool,
}

impl Default for TwoPointConfig {
    fn default() -> Self {
        TwoPointConfig {
            size: default_size(),
            threshold: default_threshold(),
            window: default_window(),
            stride: default_stride(),
            periodic: false,
        }
    }
}

impl TwoPointConfig {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("extractor `two_point`: {m}")));
        super::check_input_size(self.size).or_else(bad)?;
        if !self.threshold.is_finite() {
            return bad(format!("threshold must be finite, got {}", self.threshold));
        }
        if self.window < 1 || 2 * self.window + 1 > self.size {
            return bad(format!("window must be in 1..={}, got {}", (self.size - 1) / 2, self.window));
        }
        if self.stride < 1 || self.stride > self.window {
            return bad(format!("stride must be in 1..={}, got {}", self.window, self.stride));
        }
        Ok(())
    }
}

crate::register_type!(Extractor, "two_point");

#[typetag::serde(name = "two_point")]
impl ExtractorConfig for TwoPointConfig {
    fn build(&self, _ctx: &BuildContext) -> Result<Box<dyn FeatureExtractor>> {
        self.check()?;
        Ok(Box::new(TwoPoint { config: self.clone(), lags: lags(self.window, self.stride) }))
    }

    fn input_size(&self) -> i64 {
        self.size
    }
}

/// The lags `(dy, dx)` of features `1..`, in order (see the module docs).
///
/// ```
/// let l = furcate_core::extractor::two_point::lags(2, 2);
/// assert_eq!(l, [(0, 2), (2, -2), (2, 0), (2, 2)]);
/// ```
pub fn lags(window: i64, stride: i64) -> Vec<(i64, i64)> {
    let m = if stride > 0 { window.max(0) / stride } else { 0 };
    let steps: Vec<i64> = (-m..=m).map(|k| k * stride).collect();
    let mut out = Vec::new();
    for &dy in &steps {
        for &dx in &steps {
            if dy > 0 || (dy == 0 && dx > 0) {
                out.push((dy, dx));
            }
        }
    }
    out
}

/// A built `two_point` extractor.
#[derive(Debug)]
pub struct TwoPoint {
    config: TwoPointConfig,
    lags: Vec<(i64, i64)>,
}

/// `|rfft2(x)|²` transformed back: the (circular, over `s`) autocorrelation sums.
///
/// # Shapes
/// `[N, H, W]` -> `[N, s0, s1]`.
fn autocorrelation_sums(x: &Tensor, s: [i64; 2]) -> Tensor {
    let f = x.fft_rfft2(s.as_slice(), [-2, -1], "backward");
    let power = (&f * f.conj()).real();
    power.to_kind(Kind::ComplexFloat).fft_irfft2(s.as_slice(), [-2, -1], "backward")
}

impl TwoPoint {
    /// The full two-point function with zero lag at the centre.
    ///
    /// # Shapes
    /// `indicator`: `[N, H, W]` floats in {0, 1} -> `[N, L0, L1]`, zero lag at `[L0 / 2, L1 / 2]`.
    fn two_point(&self, indicator: &Tensor) -> Tensor {
        let (h, w) = (indicator.size()[1], indicator.size()[2]);
        let s2 = if self.config.periodic {
            autocorrelation_sums(indicator, [h, w]) / (h * w) as f64
        } else {
            let s = [2 * h, 2 * w];
            let ones = Tensor::ones([1, h, w], (Kind::Float, indicator.device()));
            let count = autocorrelation_sums(&ones, s).round().clamp_min(1.0);
            autocorrelation_sums(indicator, s) / count
        };
        s2.fft_fftshift([-2i64, -1].as_slice())
    }
}

impl FeatureExtractor for TwoPoint {
    fn input_spec(&self) -> InputSpec {
        InputSpec { size: self.config.size, channels: 1, normalisation: Normalisation::None }
    }

    fn output_dim(&self) -> i64 {
        1 + self.lags.len() as i64
    }

    /// Phase fraction, then `S2` at each of [`lags`]. Any square or
    /// rectangular input with both sides at least `2 window + 1` is accepted.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, H, W]`, floats in `[0, 1]` -> `[N, output_dim]`, `f32`, CPU.
    fn extract(&self, images: &Tensor) -> Result<Tensor> {
        let dims = images.size();
        let &[n, _, h, w] = dims.as_slice() else {
            return Err(Error::Invalid(format!("images must be [N, C, H, W], got {dims:?}")));
        };
        let r = self.config.window;
        if h.min(w) < 2 * r + 1 {
            return Err(Error::Invalid(format!(
                "extractor `two_point`: images are {h}x{w}, smaller than the window's {0}x{0}",
                2 * r + 1
            )));
        }
        let grey = self.input_spec().prepare(images)?;
        tch::no_grad(|| {
            let indicator = grey.squeeze_dim(1).gt(self.config.threshold).to_kind(Kind::Float);
            let fraction = indicator.mean_dim([-2i64, -1].as_slice(), false, Kind::Float);
            let s2 = self.two_point(&indicator);
            let (cy, cx) = (s2.size()[1] / 2, s2.size()[2] / 2);
            let ys: Vec<i64> = self.lags.iter().map(|(dy, _)| cy + dy).collect();
            let xs: Vec<i64> = self.lags.iter().map(|(_, dx)| cx + dx).collect();
            let flat = s2.reshape([n, -1]);
            let width = s2.size()[2];
            let index: Vec<i64> = ys.iter().zip(&xs).map(|(y, x)| y * width + x).collect();
            let index = Tensor::from_slice(&index).to_device(flat.device());
            let picked = flat.index_select(1, &index);
            Ok(Tensor::cat(&[fraction.unsqueeze(1), picked], 1).to_kind(Kind::Float).to_device(Device::Cpu))
        })
    }
}
