//! Feature extractors: frozen networks (or classical descriptors) that turn
//! images into one feature vector each.
//!
//! An extractor is chosen in TOML by `type`, e.g.
//!
//! ```toml
//! [extractor]
//! type = "efficientnet_lite0"
//! weights = "cache:efficientnet_lite0.safetensors"
//! ```
//!
//! and built from its [`ExtractorConfig`]. Images reach it as `[N, C, H, W]`
//! floats in `[0, 1]` at its [`InputSpec::size`]; it normalises them itself.
//!
//! The pretrained CNNs can also hand their last stages to the model to
//! fine-tune (`trainable_stages = N`, [`trainable`]): they are then cut at
//! the frozen boundary, and their [`FeatureExtractor::trainable_tail`] builds
//! the rest.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::{Error, Result};

pub mod concat;
pub mod efficientnet_lite0;
pub mod frozen;
pub mod network;
pub mod resnet50;
pub mod taps;
pub mod trainable;
pub mod two_point;
pub mod weights;

pub use trainable::TrainableTail;

/// Smallest input side an extractor takes: below it the five stride-2 stages
/// of the networks leave nothing to pool.
pub const MIN_INPUT_SIZE: i64 = 32;

/// The one rule on an extractor's input side, [`MIN_INPUT_SIZE`]: checked
/// when a config is read (with its line) and when an extractor is built.
/// The message starts with `size`.
///
/// ```
/// use furcate_core::extractor::check_input_size;
///
/// assert!(check_input_size(32).is_ok());
/// assert_eq!(check_input_size(16).unwrap_err(), "size must be at least 32, got 16");
/// ```
pub fn check_input_size(size: i64) -> std::result::Result<(), String> {
    if size < MIN_INPUT_SIZE {
        return Err(format!("size must be at least {MIN_INPUT_SIZE}, got {size}"));
    }
    Ok(())
}

/// What input an extractor wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Side of the square image, in pixels.
    pub size: i64,
    /// Channels the network consumes (grayscale input is replicated to these).
    pub channels: i64,
    /// Per-channel normalisation applied to `[0, 1]` pixels.
    pub normalisation: Normalisation,
}

/// Per-channel normalisation `(x - mean) / std` of `[0, 1]` pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalisation {
    /// ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
    Imagenet,
    /// Maps `[0, 1]` to about `[-1, 1]`: mean 0.5, std 0.5 (the TF-Lite EfficientNet-Lite convention).
    Symmetric,
    /// Pixels are used as they are.
    None,
    /// Explicit per-channel values.
    Custom {
        /// Mean per channel.
        mean: [f64; 3],
        /// Standard deviation per channel.
        std: [f64; 3],
    },
}

impl Normalisation {
    /// Mean and std per channel.
    pub fn mean_std(&self) -> ([f64; 3], [f64; 3]) {
        match self {
            Normalisation::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            Normalisation::Symmetric => ([0.5; 3], [0.5; 3]),
            Normalisation::None => ([0.0; 3], [1.0; 3]),
            Normalisation::Custom { mean, std } => (*mean, *std),
        }
    }
}

impl InputSpec {
    /// Replicates grayscale to [`InputSpec::channels`] and normalises.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, H, W]`, floats in `[0, 1]` -> `[N, channels, H, W]`.
    pub fn prepare(&self, images: &Tensor) -> Result<Tensor> {
        let dims = images.size();
        if dims.len() != 4 {
            return Err(Error::Invalid(format!("images must be [N, C, H, W], got {dims:?}")));
        }
        let c = dims[1];
        let x = images.f_to_kind(Kind::Float)?;
        let x = match (c, self.channels) {
            (a, b) if a == b => x,
            (1, n) => x.f_expand([dims[0], n, dims[2], dims[3]], false)?,
            (3, 1) => x.f_mean_dim(1, true, Kind::Float)?,
            (a, b) => {
                return Err(Error::Invalid(format!("images have {a} channels, the extractor wants {b}")))
            }
        };
        let (mean, std) = self.normalisation.mean_std();
        let n = self.channels as usize;
        let column = |v: [f64; 3]| -> Result<Tensor> {
            let t = Tensor::f_from_slice(&v.map(|v| v as f32)[..n.min(3)])?;
            Ok(t.f_view([1, -1, 1, 1])?.f_to_device(x.device())?)
        };
        Ok(x.f_sub(&column(mean)?)?.f_div(&column(std)?)?)
    }
}

/// A frozen function from images to feature vectors.
///
/// Implementations hold their own `VarStore`, never train, and run under
/// no-grad. `Send` so that a pipeline can move it to a worker thread. One cut
/// for partial fine-tuning returns the activation at its frozen boundary and
/// makes the rest with [`FeatureExtractor::trainable_tail`].
pub trait FeatureExtractor: Send {
    /// The input this extractor wants.
    fn input_spec(&self) -> InputSpec;

    /// Width `D` of one feature vector.
    fn output_dim(&self) -> i64;

    /// Features of a batch of images, computed under no-grad.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]`, floats in `[0, 1]`, any device -> `[N, D]`, `f32`, CPU.
    fn extract(&self, images: &Tensor) -> Result<Tensor>;

    /// SHA-256 of the weights file this extractor was loaded from, if any.
    fn weights_sha256(&self) -> Option<String> {
        None
    }

    /// The trainable last stages that turn this extractor's features into
    /// pooled ones, built under `p` (in the model's `VarStore`) and started
    /// from the extractor's own values; `None` (the default) for an extractor
    /// whose features are final.
    fn trainable_tail(&self, p: &nn::Path) -> Result<Option<Box<dyn TrainableTail>>> {
        let _ = p;
        Ok(None)
    }

    /// How many images [`FeatureExtractor::extract_all`] hands to `extract` at once.
    fn batch_size(&self) -> usize {
        32
    }

    /// For an extractor made of others (`concat`): its parts, in feature
    /// order, each of which the feature cache then keeps on its own.
    fn parts(&self) -> Option<&[Box<dyn FeatureExtractor>]> {
        None
    }

    /// The features of its taps `which` (indices into its configured taps,
    /// [`ExtractorConfig::tap_names`]), from one pass over the images. The
    /// default is for an extractor with one tap: `which` must be `[0]`.
    ///
    /// # Shapes
    /// `images`: `[N, C, size, size]` -> one `[N, D_tap]` per entry of `which`.
    fn extract_taps(&self, images: &Tensor, which: &[usize]) -> Result<Vec<Tensor>> {
        match which {
            [0] => Ok(vec![self.extract(images)?]),
            _ => Err(Error::Invalid(format!("this extractor has one tap, asked for taps {which:?}"))),
        }
    }

    /// Features of any number of images, in batches of [`FeatureExtractor::batch_size`],
    /// calling `progress(done)` after each batch.
    ///
    /// # Shapes
    /// `images`: `[N, C, size, size]` -> `[N, D]`.
    fn extract_all(&self, images: &Tensor, progress: &mut dyn FnMut(usize)) -> Result<Tensor> {
        let n = images.size().first().copied().unwrap_or(0);
        let bs = self.batch_size().max(1) as i64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let len = bs.min(n - start);
            parts.push(self.extract(&images.narrow(0, start, len))?);
            start += len;
            progress(start as usize);
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([0, self.output_dim()], (Kind::Float, tch::Device::Cpu)));
        }
        Ok(Tensor::cat(&parts, 0))
    }
}

/// Where a configuration came from, for resolving the paths it names.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Folder of the configuration file; relative paths are resolved against it.
    pub config_dir: PathBuf,
}

impl BuildContext {
    /// A context for a configuration file in `config_dir`.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        BuildContext { config_dir: config_dir.into() }
    }

    /// Resolves a path written in a configuration: `cache:NAME` is a file of
    /// the weights cache ([`crate::weights::cache_dir`]), an absolute path is
    /// kept, a relative one is taken from the configuration's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        let s = path.to_string_lossy();
        if let Some(name) = s.strip_prefix("cache:") {
            crate::weights::weights_dir().join(name)
        } else if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }
}

/// The TOML table of an extractor; `type` picks the implementation.
#[typetag::serde(tag = "type")]
pub trait ExtractorConfig: Debug + Send + Sync {
    /// Builds the extractor (loading its weights).
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn FeatureExtractor>>;

    /// The side of the square images it consumes.
    fn input_size(&self) -> i64;

    /// For an extractor made of others (`concat`): the parts' configurations,
    /// in the order of [`FeatureExtractor::parts`].
    fn parts(&self) -> Option<&[Box<dyn ExtractorConfig>]> {
        None
    }

    /// How many of its last stages the built extractor hands to the model to
    /// train ([`FeatureExtractor::trainable_tail`]); 0 (the default) when its
    /// features are final.
    fn trainable_stages(&self) -> usize {
        0
    }

    /// Checks the table's values that need no files (tap names, say), so a
    /// configuration is rejected when it is read; the default accepts all.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The names of the taps its features are made of, in feature order
    /// (see [`taps`]). The default is one tap named by the `type`.
    fn tap_names(&self) -> Vec<String> {
        vec![self.typetag_name().to_string()]
    }

    /// For an extractor with several taps: the table that extracts only tap
    /// `i`, whose serialised form is that tap's feature-cache identity.
    /// `None` (the default) for an extractor whose features are one tap.
    fn tap_config(&self, i: usize) -> Option<Box<dyn ExtractorConfig>> {
        let _ = i;
        None
    }
}

impl Clone for Box<dyn ExtractorConfig> {
    fn clone(&self) -> Self {
        // Round-trips through the typetag representation, which every config has.
        let value = serde_json::to_value(self).expect("extractor configs serialise");
        serde_json::from_value(value).expect("extractor configs deserialise what they serialise")
    }
}
