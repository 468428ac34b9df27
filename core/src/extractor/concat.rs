//! The `concat` extractor: the features of several extractors side by side.
//!
//! ```toml
//! [extractor]
//! type = "concat"
//! extractors = [
//!     { type = "efficientnet_lite0", weights = "cache:efficientnet_lite0.safetensors" },
//!     { type = "two_point", size = 128 },
//! ]
//! ```
//!
//! **Sizes.** The parts may want different input sizes. The concat's own
//! [`input_size`](ExtractorConfig::input_size) is the largest of them; each
//! part whose size is smaller gets the images resized to its size (bilinear,
//! antialiased), so each part sees what it would see on its own up to that
//! resampling. Images are handed to each part in `[0, 1]`; every part
//! normalises them itself.
//!
//! **Features.** Part 0's features, then part 1's, ...; the width is the sum.
//! The weights identity ([`FeatureExtractor::weights_sha256`]) combines the
//! parts' (`none` for a part without weights).
//!
//! **Cache.** Every command (train, eval, predict, extract, experiment) gets
//! a concat's features part by part through the feature cache
//! ([`crate::run::features_for`]): each part is fitted from the image files
//! at its own size and cached under its own key, exactly as that extractor
//! alone would be, so a concat after a run of one of its parts extracts only
//! the other parts, and a sweep over `a`, `b` and `concat[a, b]` extracts
//! each once. [`FeatureExtractor::extract`] on a ready batch resizes that
//! batch instead (the only choice with no files at hand), which can differ
//! from the cached path by the resampling.
//!
//! ```
//! use furcate_core::extractor::concat::ConcatConfig;
//! use furcate_core::{BuildContext, ExtractorConfig};
//! use tch::{Device, Kind, Tensor};
//!
//! let config: Box<dyn ExtractorConfig> = toml::from_str(
//!     "type = \"concat\"\nextractors = [{ type = \"two_point\", size = 32, window = 4 }, \
//!      { type = \"two_point\", size = 64, window = 8 }]",
//! ).unwrap();
//! assert_eq!(config.input_size(), 64);
//! let extractor = config.build(&BuildContext::default())?;
//! assert_eq!(extractor.output_dim(), (1 + 12) + (1 + 40));
//! let features = extractor.extract(&Tensor::zeros([2, 1, 64, 64], (Kind::Float, Device::Cpu)))?;
//! assert_eq!(features.size(), [2, 54]);
//! # Ok::<(), furcate_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{BuildContext, ExtractorConfig, FeatureExtractor, InputSpec, Normalisation};
use crate::{fsutil, Error, Result};

/// The `[extractor]` table of `type = "concat"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatConfig {
    /// The parts, in feature order; at least one.
    pub extractors: Vec<Box<dyn ExtractorConfig>>,
}

crate::register_type!(Extractor, "concat");

#[typetag::serde(name = "concat")]
impl ExtractorConfig for ConcatConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn FeatureExtractor>> {
        if self.extractors.is_empty() {
            return Err(Error::Invalid(
                "extractor `concat`: `extractors` is empty; list at least one".into(),
            ));
        }
        if let Some((i, c)) = self.extractors.iter().enumerate().find(|(_, c)| c.trainable_stages() > 0) {
            return Err(Error::Invalid(format!(
                "extractor `concat`, extractors[{i}]: trainable_stages = {} cannot be used inside a \
                 concatenation (its features would not be final); set it to 0",
                c.trainable_stages()
            )));
        }
        let parts = self
            .extractors
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.build(ctx).map_err(|e| Error::Invalid(format!("extractor `concat`, extractors[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(Concat { size: self.input_size(), parts }))
    }

    /// The largest input size of the parts.
    fn input_size(&self) -> i64 {
        self.extractors.iter().map(|c| c.input_size()).max().unwrap_or(0)
    }

    fn parts(&self) -> Option<&[Box<dyn ExtractorConfig>]> {
        Some(&self.extractors)
    }

    fn validate(&self) -> Result<()> {
        for (i, c) in self.extractors.iter().enumerate() {
            c.validate().map_err(|e| Error::Invalid(format!("extractor `concat`, extractors[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// The parts' taps in order ([`super::taps::merge_tap_names`]: a name
    /// that several parts have is prefixed by its part's index).
    fn tap_names(&self) -> Vec<String> {
        super::taps::merge_tap_names(self.extractors.iter().map(|c| c.tap_names()).collect())
    }
}

/// A built `concat` extractor.
pub struct Concat {
    size: i64,
    parts: Vec<Box<dyn FeatureExtractor>>,
}

impl std::fmt::Debug for Concat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concat").field("size", &self.size).field("parts", &self.parts.len()).finish()
    }
}

impl FeatureExtractor for Concat {
    /// The largest size, the most channels of the parts, and no normalisation
    /// (each part normalises its own input).
    fn input_spec(&self) -> InputSpec {
        let channels = self.parts.iter().map(|p| p.input_spec().channels).max().unwrap_or(1);
        InputSpec { size: self.size, channels, normalisation: Normalisation::None }
    }

    fn output_dim(&self) -> i64 {
        self.parts.iter().map(|p| p.output_dim()).sum()
    }

    /// Each part's features of the images (resized to its size where it
    /// differs), concatenated.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, H, W]`, floats in `[0, 1]` -> `[N, output_dim]`, `f32`, CPU.
    fn extract(&self, images: &Tensor) -> Result<Tensor> {
        let dims = images.size();
        let &[_, _, h, w] = dims.as_slice() else {
            return Err(Error::Invalid(format!("images must be [N, C, H, W], got {dims:?}")));
        };
        let mut features = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let size = part.input_spec().size;
            let x = if (h, w) == (size, size) {
                images.shallow_clone()
            } else {
                tch::no_grad(|| {
                    images.to_kind(Kind::Float).f_internal_upsample_bilinear2d_aa(
                        [size, size],
                        false,
                        None,
                        None,
                    )
                })?
                .clamp(0.0, 1.0)
            };
            features.push(part.extract(&x)?.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        Ok(Tensor::cat(&features, 1))
    }

    /// SHA-256 over the parts' weight hashes (`none` for a part without), or
    /// `None` when no part has weights.
    fn weights_sha256(&self) -> Option<String> {
        let hashes: Vec<Option<String>> = self.parts.iter().map(|p| p.weights_sha256()).collect();
        if hashes.iter().all(Option::is_none) {
            return None;
        }
        let text: Vec<&str> = hashes.iter().map(|h| h.as_deref().unwrap_or("none")).collect();
        Some(fsutil::sha256_bytes(text.join("\n").as_bytes()))
    }

    /// The smallest batch size of the parts.
    fn batch_size(&self) -> usize {
        self.parts.iter().map(|p| p.batch_size()).min().unwrap_or(32)
    }

    fn parts(&self) -> Option<&[Box<dyn FeatureExtractor>]> {
        Some(&self.parts)
    }
}
