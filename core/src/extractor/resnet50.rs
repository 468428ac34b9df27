//! The `resnet50` extractor: torchvision's ResNet50 (v1.5: stride on the 3x3
//! convolution) without its classifier, frozen, BatchNorm in eval mode,
//! 2048 globally average-pooled features per image.
//!
//! The network is built from tch's `nn` layers under torchvision's names, as
//! tch's `resnet50_no_final_layer` is, but its forward pass applies the ReLUs
//! and residual additions in place, as torchvision does: tch's version
//! allocates a fresh tensor for each of them, which cost about 25 % more CPU
//! time per image here (2 cores, 128x128, batch 32).
//!
//! ```toml
//! [extractor]
//! type = "resnet50"
//! weights = "resnet50.safetensors"   # a torchvision / timm state_dict
//! size = 224
//! ```
//!
//! The weights file uses torchvision's names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, ...); `fc.*` and `num_batches_tracked` are
//! not needed. The guide's Heads and extractors chapter (docs/src/heads.md)
//! says how to make one from torchvision.
//!
//! Its stages, for `trainable_stages` ([`super::trainable`]), are `layer1` ..
//! `layer4`: `trainable_stages = 1` fine-tunes `layer4` on cached `layer3`
//! activations (1024 x size/16 x size/16 per image).

use tch::nn;
use tch::Tensor;

use super::frozen::{batch_norm_eval, Backbone, Network};
use super::weights::KeyRules;
use crate::Result;

/// Width of ResNet50's pooled features.
pub const RESNET50_DIM: i64 = 2048;

super::frozen::backbone_config! {
    /// The `[extractor]` table with `type = "resnet50"`; see
    /// [`BackboneConfig`](super::frozen::BackboneConfig) for its keys.
    pub struct ResNet50Config for ResNet50Net, "resnet50"
}

/// A bias-free convolution followed by BatchNorm (eval mode).
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    stride: i64,
    padding: i64,
}

impl ConvBn {
    fn new(conv: nn::Path, bn: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let cfg = nn::ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
        ConvBn {
            conv: nn::conv2d(conv, c_in, c_out, kernel, cfg),
            bn: nn::batch_norm2d(bn, c_out, Default::default()),
            stride,
            padding: kernel / 2,
        }
    }

    fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (s, p) = ([self.stride; 2], [self.padding; 2]);
        let y = x.f_conv2d(&self.conv.ws, self.conv.bs.as_ref(), s, p, [1, 1], 1)?;
        // torchvision's BatchNorm2d epsilon, tch's default.
        let mut y = batch_norm_eval(&y, &self.bn, 1e-5)?;
        if relu {
            let _ = y.f_relu_()?;
        }
        Ok(y)
    }
}

/// A bottleneck block: 1x1, 3x3 (with the stride), 1x1 to 4x the width, plus the shortcut.
#[derive(Debug)]
struct Bottleneck {
    reduce: ConvBn,
    spatial: ConvBn,
    expand: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(p: nn::Path, c_in: i64, width: i64, stride: i64) -> Self {
        let c_out = 4 * width;
        let downsample = (stride != 1 || c_in != c_out)
            .then(|| ConvBn::new(&p / "downsample" / 0, &p / "downsample" / 1, c_in, c_out, 1, stride));
        Bottleneck {
            reduce: ConvBn::new(&p / "conv1", &p / "bn1", c_in, width, 1, 1),
            spatial: ConvBn::new(&p / "conv2", &p / "bn2", width, width, 3, stride),
            expand: ConvBn::new(&p / "conv3", &p / "bn3", width, c_out, 1, 1),
            downsample,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.reduce.forward(x, true)?;
        let h = self.spatial.forward(&h, true)?;
        let mut y = self.expand.forward(&h, false)?;
        let _ = match &self.downsample {
            Some(d) => y.f_add_(&d.forward(x, false)?)?,
            None => y.f_add_(x)?,
        };
        let _ = y.f_relu_()?;
        Ok(y)
    }
}

/// ResNet50 up to its global average pool, named as torchvision's state dict.
///
/// Its [`Network::STAGES`] are `layer1` .. `layer4`.
#[derive(Debug)]
pub struct ResNet50Net {
    stem: Option<ConvBn>,
    /// Per stage its blocks; empty for the stages a tail does not hold.
    stages: Vec<Vec<Bottleneck>>,
}

/// The stages: (blocks, bottleneck width, stride of the first block).
const STAGE_SPECS: [(usize, i64, i64); 4] = [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)];

impl Network for ResNet50Net {
    const NAME: &'static str = "resnet50";
    const DIM: i64 = RESNET50_DIM;
    const RULES: KeyRules<'static> = KeyRules { unused_ok: &["fc."], optional: &[] };
    const STAGES: usize = STAGE_SPECS.len();
    const TAPS: &'static [&'static str] = &["stem", "layer1", "layer2", "layer3", "layer4"];
    const TAP_CHANNELS: &'static [i64] = &[64, 256, 512, 1024, RESNET50_DIM];

    fn build(p: &nn::Path, first: usize) -> Self {
        let stem = (first == 0).then(|| ConvBn::new(p / "conv1", p / "bn1", 3, 64, 7, 2));
        let mut stages = Vec::with_capacity(STAGE_SPECS.len());
        let mut c_in = 64;
        for (i, (count, width, stride)) in STAGE_SPECS.into_iter().enumerate() {
            let layer = p / format!("layer{}", i + 1);
            let mut blocks = Vec::new();
            if i >= first {
                for j in 0..count {
                    let (c, s) = if j == 0 { (c_in, stride) } else { (4 * width, 1) };
                    blocks.push(Bottleneck::new(&layer / j, c, width, s));
                }
            }
            c_in = 4 * width;
            stages.push(blocks);
        }
        ResNet50Net { stem, stages }
    }

    fn boundary(&self, x: &Tensor, end: usize) -> Result<Tensor> {
        let mut h = match &self.stem {
            Some(stem) => max_pool(&stem.forward(x, true)?)?,
            None => x.shallow_clone(),
        };
        for block in self.stages.iter().take(end).flatten() {
            h = block.forward(&h)?;
        }
        Ok(h)
    }

    fn pooled_from(&self, h: &Tensor, start: usize) -> Result<Tensor> {
        let mut h = h.shallow_clone();
        for block in self.stages.iter().skip(start).flatten() {
            h = block.forward(&h)?;
        }
        Ok(h.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)?)
    }

    /// Taps: `stem` after `conv1`, `bn1` and the ReLU (before the max-pool,
    /// torchvision's `relu` node), `layerN` after the last block of `layerN`.
    fn tapped(
        &self,
        x: &Tensor,
        deepest: usize,
        tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let h = match &self.stem {
            Some(stem) => {
                let h = stem.forward(x, true)?;
                tap(0, &h)?;
                max_pool(&h)?
            }
            None => x.shallow_clone(),
        };
        super::frozen::tap_stages(h, &self.stages, deepest, Bottleneck::forward, tap)?;
        Ok(())
    }
}

/// The stem's 3x3, stride-2 max-pool.
fn max_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?)
}

/// A frozen ResNet50 feature extractor.
pub type ResNet50 = Backbone<ResNet50Net>;
