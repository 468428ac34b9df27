//! What the pretrained CNN extractors share: their TOML table
//! ([`BackboneConfig`]) and the frozen network runner ([`Frozen`]) that turns
//! a batch of `[0, 1]` images into features on the configured device and
//! precision.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

pub use super::network::Network;
use super::taps::{check_tap_names, Pool};
use super::trainable::{BackboneTail, TrainableTail};
use super::weights::{self, KeyRules, LoadedWeights};
use super::{BuildContext, FeatureExtractor, InputSpec, Normalisation};
use crate::runtime::DeviceSpec;
use crate::{Error, Result};

/// Arithmetic a frozen network runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the default, and what the parity tests check).
    #[default]
    F32,
    /// bfloat16: weights and activations are cast to bf16 (CPU or CUDA).
    Bf16,
    /// float16: on CUDA, libtorch's autocast (weights stay f32, convolutions
    /// run in f16); on the CPU, weights and activations are cast to f16.
    F16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::F16 => Kind::Half,
        }
    }
}

/// The table of a pretrained CNN extractor (`resnet50`, `efficientnet_lite0`).
///
/// ```toml
/// [extractor]
/// type = "efficientnet_lite0"
/// weights = "cache:efficientnet_lite0.safetensors"
/// size = 224
/// device = "auto"
/// trainable_stages = 0   # > 0: fine-tune the last stages with the heads
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// The `.safetensors` weights file (`cache:NAME` for the weights cache, a
    /// relative path from the configuration's folder). Absent: random
    /// initialisation, with a warning that this is not transfer learning.
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Side of the square input images in pixels, at least 32 (default 224).
    #[serde(default = "default_size")]
    pub size: i64,
    /// `auto` (default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Images per forward pass (default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Runs the convolutions on channels-last (NHWC) tensors (default true).
    #[serde(default = "default_true")]
    pub channels_last: bool,
    /// `f32` (default), `bf16` or `f16`.
    #[serde(default)]
    pub precision: Precision,
    /// Lets cuDNN pick the fastest convolution algorithms (CUDA only; default false).
    #[serde(default)]
    pub cudnn_benchmark: bool,
    /// Per-channel normalisation of the `[0, 1]` pixels (default `imagenet`).
    #[serde(default = "default_normalisation")]
    pub normalisation: Normalisation,
    /// How many of the network's last stages train with the heads (default 0:
    /// the whole network is frozen). ResNet50's stages are `layer1` ..
    /// `layer4` (at most 4); EfficientNet-Lite0's are its 7 stages of MBConv
    /// blocks, the last one with the 1x1 `conv_head` (at most 7). With N > 0
    /// the extractor stops at the frozen boundary and its features (what the
    /// cache holds) are that activation, flattened; the model gets the last N
    /// stages as a [`TrainableTail`]. See
    /// [`super::trainable`]. Left out of the serialised table when 0, so the
    /// feature-cache key of a frozen extractor is what it always was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trainable_stages: usize,
    /// Depths to tap (see [`super::taps`]): the features are these taps'
    /// pooled activations side by side, in this order. Absent: the last
    /// layer's pooled features, as without taps (and the same cache key).
    /// Cannot be combined with `trainable_stages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taps: Option<Vec<String>>,
    /// How each tap is pooled over space: `mean` (default), `mean_std` or `moments`.
    #[serde(default, skip_serializing_if = "Pool::is_mean")]
    pub pool: Pool,
}

impl BackboneConfig {
    /// Checks `taps` (known names, none twice, not with `trainable_stages`).
    pub fn validate<N: Network>(&self) -> Result<()> {
        let Some(names) = &self.taps else { return Ok(()) };
        let whose = format!("extractor `{}`", N::NAME);
        // Empty and repeated lists on the names as written; each network tap
        // on its own (`stem` and `stem.moments` are two taps).
        check_tap_names(&whose, names, names)?;
        for name in names {
            let (tap, _) = Pool::split(name, self.pool);
            check_tap_names(&whose, &[tap.to_string()], N::TAPS).map_err(|e| {
                Error::Invalid(format!(
                    "{e} (a tap may end in a pool: `.mean`, `.mean_std` or `.moments`, e.g. `stem.moments`)"
                ))
            })?;
        }
        if self.trainable_stages > 0 {
            return Err(Error::Invalid(format!(
                "extractor `{}`: taps cannot be combined with trainable_stages = {} (a tapped \
                 network's features are pooled activations, not a boundary to fine-tune from); \
                 remove one of them",
                N::NAME,
                self.trainable_stages
            )));
        }
        Ok(())
    }

    /// The tap names this table's features are made of: `taps`, or the
    /// network's last tap when `taps` is absent.
    pub fn tap_names<N: Network>(&self) -> Vec<String> {
        match &self.taps {
            Some(t) => t.clone(),
            None => vec![N::TAPS[N::TAPS.len() - 1].to_string()],
        }
    }

    /// The table that extracts only tap `i` of [`BackboneConfig::tap_names`]:
    /// its cache identity. The last tap with `mean` pooling is the untapped
    /// table itself, so its cache entry is the untapped extractor's.
    pub fn single_tap<N: Network>(&self, i: usize) -> Option<BackboneConfig> {
        let taps = self.taps.as_ref()?;
        let name = taps.get(i)?;
        // A pool suffix is the one tap's pool: `stem.moments` is cached as
        // the stem under `pool = "moments"`, whichever way it was asked for.
        let (tap, pool) = Pool::split(name, self.pool);
        let mut one = self.clone();
        one.pool = pool;
        one.taps = (tap != N::TAPS[N::TAPS.len() - 1] || pool != Pool::Mean).then(|| vec![tap.to_string()]);
        Some(one)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_size() -> i64 {
    224
}
fn default_batch_size() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_normalisation() -> Normalisation {
    Normalisation::Imagenet
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig {
            weights: None,
            size: default_size(),
            device: DeviceSpec::default(),
            batch_size: default_batch_size(),
            channels_last: default_true(),
            precision: Precision::default(),
            cudnn_benchmark: false,
            normalisation: default_normalisation(),
            trainable_stages: 0,
            taps: None,
            pool: Pool::Mean,
        }
    }
}

/// The same memory in NHWC order, as libtorch's channels-last format.
///
/// # Shapes
/// `[N, C, H, W]` -> `[N, C, H, W]` (strides of an NHWC layout).
pub fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?)
}

/// Batch normalisation with epsilon `eps` in eval mode (running
/// statistics), as tch's `BatchNorm::forward_t(x, false)` but fallible.
///
/// # Shapes
/// `[N, C, H, W]` -> `[N, C, H, W]`.
pub fn batch_norm_eval(x: &Tensor, bn: &nn::BatchNorm, eps: f64) -> Result<Tensor> {
    // The momentum only matters while training.
    Ok(Tensor::f_batch_norm(
        x,
        bn.ws.as_ref(),
        bn.bs.as_ref(),
        Some(&bn.running_mean),
        Some(&bn.running_var),
        false,
        0.1,
        eps,
        true,
    )?)
}

/// A frozen network in its own `VarStore`, and how to run it.
#[derive(Debug)]
pub struct Frozen {
    /// Its variables (frozen: no gradient).
    pub vs: VarStore,
    /// The device it runs on.
    pub device: Device,
    /// The input it wants.
    pub spec: InputSpec,
    /// Its precision.
    pub precision: Precision,
    /// Whether activations are made channels-last.
    pub channels_last: bool,
    /// Images per forward pass.
    pub batch_size: usize,
    /// The weights file it was loaded from, if any.
    pub weights: Option<LoadedWeights>,
}

impl Frozen {
    /// Builds a network with `build` under a fresh `VarStore` on the configured
    /// device, fills it from the configured weights file (checked with `rules`),
    /// freezes it and converts it to the configured precision and memory format.
    pub fn build<M>(
        name: &str,
        cfg: &BackboneConfig,
        ctx: &BuildContext,
        rules: KeyRules<'_>,
        build: impl FnOnce(&nn::Path) -> M,
    ) -> Result<(Self, M)> {
        super::check_input_size(cfg.size).map_err(|m| Error::Invalid(format!("extractor `{name}`: {m}")))?;
        if cfg.batch_size == 0 {
            return Err(Error::Invalid(format!("extractor `{name}`: batch_size must be at least 1")));
        }
        let device = cfg.device.resolve()?;
        let mut vs = VarStore::new(device);
        let module = build(&vs.root());
        let weights = match &cfg.weights {
            Some(w) => {
                let path = ctx.resolve(w);
                let loaded = weights::load_into(&vs, &path, rules)?;
                tracing::info!(
                    "extractor {name}: {} tensors from {} ({}), sha256 {}",
                    loaded.loaded,
                    path.display(),
                    loaded.dtypes.iter().cloned().collect::<Vec<_>>().join(", "),
                    loaded.sha256
                );
                Some(loaded)
            }
            None => {
                tracing::warn!(
                    "extractor {name}: NO WEIGHTS FILE configured: the network is RANDOMLY INITIALISED, \
                     so its features are NOT transfer learning. Name a pretrained .safetensors file \
                     with `weights = ...` in the [extractor] table."
                );
                None
            }
        };
        vs.freeze();
        let cuda = device.is_cuda();
        match (cfg.precision, cuda) {
            (Precision::F32, _) | (Precision::F16, true) => {}
            (p, _) => vs.set_kind(p.kind()),
        }
        if cfg.channels_last {
            tch::no_grad(|| -> Result<()> {
                for (_, mut var) in vs.variables() {
                    if var.dim() == 4 {
                        var.set_data(&to_channels_last(&var)?);
                    }
                }
                Ok(())
            })?;
        }
        if cuda && cfg.cudnn_benchmark {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let spec = InputSpec { size: cfg.size, channels: 3, normalisation: cfg.normalisation.clone() };
        let frozen = Frozen {
            vs,
            device,
            spec,
            precision: cfg.precision,
            channels_last: cfg.channels_last,
            batch_size: cfg.batch_size,
            weights,
        };
        Ok((frozen, module))
    }

    /// Checks and prepares `images` (device, 3 channels, normalisation, memory
    /// format, precision), runs `forward` on them under no-grad, and returns
    /// its output as `f32` on the CPU. A libtorch failure (of `forward`'s
    /// fallible `f_` calls, or of the preparation) is an [`Error::Torch`]
    /// naming the extractor's device.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` in `[0, 1]` -> what `forward` returns.
    pub fn run(&self, images: &Tensor, forward: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let dims = images.size();
        let size = self.spec.size;
        if dims.len() != 4 || dims[2] != size || dims[3] != size {
            return Err(Error::Invalid(format!(
                "images must be [N, 1 or 3, {size}, {size}] (the extractor's size), got {dims:?}"
            )));
        }
        if !images.is_floating_point() {
            return Err(Error::Invalid(format!("images must be floats in [0, 1], got {:?}", images.kind())));
        }
        let device = self.device;
        let autocast = device.is_cuda() && self.precision == Precision::F16;
        let context = |e: Error| match e {
            Error::Torch(m) => Error::Torch(format!("extractor on {device:?}: {m}")),
            e => e,
        };
        tch::no_grad(|| -> Result<Tensor> {
            let x = self.spec.prepare(&images.f_to_device(device)?)?;
            let x = if self.channels_last { to_channels_last(&x)? } else { x };
            let x = if autocast { x } else { x.f_to_kind(self.precision.kind())? };
            let y = tch::autocast(autocast, || forward(&x))?;
            Ok(y.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?)
        })
        .map_err(context)
    }
}

/// Declares the `[extractor]` config of a [`Network`]: a transparent wrapper
/// of [`BackboneConfig`] (its keys) registered as `type = $type_name` (with
/// typetag and [`crate::registry`]), whose
/// [`ExtractorConfig`](super::ExtractorConfig) builds a [`Backbone`] of the
/// network and answers every other method from the wrapped config.
macro_rules! backbone_config {
    ($(#[$meta:meta])* $vis:vis struct $config:ident for $net:ty, $type_name:tt) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        $vis struct $config(pub $crate::extractor::frozen::BackboneConfig);

        $crate::register_type!(Extractor, $type_name);

        #[typetag::serde(name = $type_name)]
        impl $crate::extractor::ExtractorConfig for $config {
            fn build(
                &self,
                ctx: &$crate::extractor::BuildContext,
            ) -> $crate::Result<Box<dyn $crate::extractor::FeatureExtractor>> {
                Ok(Box::new($crate::extractor::frozen::Backbone::<$net>::new(&self.0, ctx)?))
            }

            fn input_size(&self) -> i64 {
                self.0.size
            }

            fn trainable_stages(&self) -> usize {
                self.0.trainable_stages
            }

            fn validate(&self) -> $crate::Result<()> {
                self.0.validate::<$net>()
            }

            fn tap_names(&self) -> Vec<String> {
                self.0.tap_names::<$net>()
            }

            fn tap_config(&self, i: usize) -> Option<Box<dyn $crate::extractor::ExtractorConfig>> {
                self.0
                    .single_tap::<$net>(i)
                    .map(|c| Box::new($config(c)) as Box<dyn $crate::extractor::ExtractorConfig>)
            }
        }
    };
}
pub(crate) use backbone_config;

/// Runs `h` through the `stages` (each a list of blocks, `forward` running
/// one) up to stage `deepest` (1-based), calling `tap(i + 1, ..)` after stage
/// `i`: the stage loop of [`Network::tapped`]. The output of the last stage
/// when every stage ran, `None` when `deepest` stopped it earlier.
pub(crate) fn tap_stages<B>(
    mut h: Tensor,
    stages: &[Vec<B>],
    deepest: usize,
    forward: impl Fn(&B, &Tensor) -> Result<Tensor>,
    tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
) -> Result<Option<Tensor>> {
    for (i, blocks) in stages.iter().enumerate() {
        if i + 1 > deepest {
            return Ok(None);
        }
        for block in blocks {
            h = forward(block, &h)?;
        }
        tap(i + 1, &h)?;
    }
    Ok(Some(h))
}

/// A frozen pretrained network used as a [`FeatureExtractor`].
///
/// With `trainable_stages = N > 0` it runs only its first `STAGES - N`
/// stages: its features are the activation at that frozen boundary,
/// flattened, and [`FeatureExtractor::trainable_tail`] makes the last `N`
/// stages for the model.
#[derive(Debug)]
pub struct Backbone<N: Network> {
    frozen: Frozen,
    net: N,
    trainable: usize,
    boundary: Option<[i64; 3]>,
    /// With `taps`: each configured tap's index in [`Network::TAPS`] and its pool.
    taps: Option<Vec<(usize, Pool)>>,
}

impl<N: Network> Backbone<N> {
    /// Builds the network and loads the configured weights, checking every
    /// tensor. Errors when `trainable_stages` is more than [`Network::STAGES`].
    pub fn new(cfg: &BackboneConfig, ctx: &BuildContext) -> Result<Self> {
        if cfg.trainable_stages > N::STAGES {
            return Err(Error::Invalid(format!(
                "extractor `{}`: trainable_stages = {} is more than its {} stages; it must be at most {}",
                N::NAME,
                cfg.trainable_stages,
                N::STAGES,
                N::STAGES
            )));
        }
        cfg.validate::<N>()?;
        let taps = cfg.taps.as_ref().map(|names| {
            names
                .iter()
                .map(|n| {
                    let (tap, pool) = Pool::split(n, cfg.pool);
                    (N::TAPS.iter().position(|t| *t == tap).unwrap_or(0), pool)
                })
                .collect()
        });
        let (frozen, net) = Frozen::build(N::NAME, cfg, ctx, N::RULES, N::new)?;
        let mut backbone = Backbone { frozen, net, trainable: cfg.trainable_stages, boundary: None, taps };
        if backbone.trainable > 0 {
            // One zero image through the frozen part gives the boundary's shape
            // at this size (exactly what `extract` will return, whatever the padding rules).
            let probe = Tensor::zeros([1, 3, cfg.size, cfg.size], (Kind::Float, Device::Cpu));
            let end = backbone.frozen_stages();
            let dims = backbone.frozen.run(&probe, |x| backbone.net.boundary(x, end))?.size();
            backbone.boundary = Some([dims[1], dims[2], dims[3]]);
        }
        Ok(backbone)
    }

    /// The network's variables (frozen), e.g. to inspect their dtype or device.
    pub fn var_store(&self) -> &VarStore {
        &self.frozen.vs
    }

    /// The runner: device, precision, loaded weights.
    pub fn frozen(&self) -> &Frozen {
        &self.frozen
    }

    /// The network (all of it, whatever `trainable_stages` is).
    pub fn net(&self) -> &N {
        &self.net
    }

    /// The stages it trains with the heads (`trainable_stages`).
    pub fn trainable_stages(&self) -> usize {
        self.trainable
    }

    /// The stages [`FeatureExtractor::extract`] runs: `STAGES - trainable_stages`.
    pub fn frozen_stages(&self) -> usize {
        N::STAGES - self.trainable
    }

    /// `[C, H, W]` of the activation at the frozen boundary, when
    /// `trainable_stages > 0`; its product is [`FeatureExtractor::output_dim`].
    pub fn boundary_shape(&self) -> Option<[i64; 3]> {
        self.boundary
    }
}

impl<N: Network> FeatureExtractor for Backbone<N> {
    fn input_spec(&self) -> InputSpec {
        self.frozen.spec.clone()
    }

    /// `DIM`, the taps' pooled widths added up, or `C * H * W` of the frozen
    /// boundary when `trainable_stages > 0`.
    fn output_dim(&self) -> i64 {
        match (&self.taps, self.boundary) {
            (Some(taps), _) => taps.iter().map(|&(t, pool)| N::TAP_CHANNELS[t] * pool.factor()).sum(),
            (None, Some([c, h, w])) => c * h * w,
            (None, None) => N::DIM,
        }
    }

    /// The pooled activations of the configured taps `which` (indices into
    /// `taps`), from one forward pass stopped after the deepest of them.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` in `[0, 1]` -> one `[N, D_tap]` per entry of `which`.
    fn extract_taps(&self, images: &Tensor, which: &[usize]) -> Result<Vec<Tensor>> {
        let Some(taps) = &self.taps else {
            return match which {
                [0] => Ok(vec![self.extract(images)?]),
                _ => Err(Error::Invalid(format!("extractor `{}` has one tap, asked for {which:?}", N::NAME))),
            };
        };
        let wanted: Vec<(usize, Pool)> = which
            .iter()
            .map(|&w| {
                taps.get(w).copied().ok_or_else(|| {
                    Error::Invalid(format!("extractor `{}`: tap {w} of {} asked for", N::NAME, taps.len()))
                })
            })
            .collect::<Result<_>>()?;
        let Some(deepest) = wanted.iter().map(|w| w.0).max() else { return Ok(Vec::new()) };
        let widths: Vec<i64> = wanted.iter().map(|&(t, pool)| N::TAP_CHANNELS[t] * pool.factor()).collect();
        let all = self.frozen.run(images, |x| {
            let mut pooled: Vec<Option<Tensor>> = wanted.iter().map(|_| None).collect();
            self.net.tapped(x, deepest, &mut |i, a| {
                // Each pool of this activation computed once.
                let mut done: Vec<(Pool, Tensor)> = Vec::new();
                for (slot, &(w, pool)) in pooled.iter_mut().zip(&wanted) {
                    if w != i {
                        continue;
                    }
                    if !done.iter().any(|d| d.0 == pool) {
                        done.push((pool, pool.apply(a)?));
                    }
                    *slot = done.iter().find(|d| d.0 == pool).map(|d| d.1.shallow_clone());
                }
                Ok(())
            })?;
            let parts: Vec<Tensor> = pooled.into_iter().flatten().collect();
            Ok(Tensor::f_cat(&parts, 1)?)
        })?;
        all.f_split_with_sizes(&widths, 1)?.into_iter().map(|t| Ok(t.f_contiguous()?)).collect()
    }

    /// Pooled features, or the frozen boundary's activation flattened in
    /// `C, H, W` order when `trainable_stages > 0`.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` in `[0, 1]` -> `[N, D]`, `f32`, CPU.
    fn extract(&self, images: &Tensor) -> Result<Tensor> {
        if let Some(taps) = &self.taps {
            let which: Vec<usize> = (0..taps.len()).collect();
            return Ok(Tensor::cat(&self.extract_taps(images, &which)?, 1));
        }
        match self.boundary {
            None => self.frozen.run(images, |x| self.net.features(x)),
            Some(_) => {
                let end = self.frozen_stages();
                self.frozen.run(images, |x| Ok(self.net.boundary(x, end)?.f_flatten(1, -1)?))
            }
        }
    }

    fn weights_sha256(&self) -> Option<String> {
        self.frozen.weights.as_ref().map(|w| w.sha256.clone())
    }

    fn batch_size(&self) -> usize {
        self.frozen.batch_size
    }

    /// The last `trainable_stages` stages under `p`, started from this
    /// extractor's (pretrained) values; `None` when it is fully frozen.
    fn trainable_tail(&self, p: &nn::Path) -> Result<Option<Box<dyn TrainableTail>>> {
        let Some(shape) = self.boundary else { return Ok(None) };
        let tail = BackboneTail::<N>::new(p, &self.frozen.vs, self.frozen_stages(), shape)?;
        Ok(Some(Box::new(tail)))
    }
}
