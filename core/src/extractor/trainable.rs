//! Partial fine-tuning: the last stages of a pretrained backbone train with
//! the heads, while everything before them stays frozen and is still run only
//! once per image.
//!
//! ```toml
//! [extractor]
//! type = "resnet50"
//! weights = "resnet50.safetensors"
//! size = 128
//! trainable_stages = 1    # fine-tune layer4; the cache holds layer3's output
//!
//! [training]
//! batch_size = 32         # mini-batches: every step runs the tail
//! ```
//!
//! With `trainable_stages = N > 0`:
//!
//! - the extractor runs its stem and all but its last `N` stages, and its
//!   features are the activation at that *frozen boundary*, flattened to
//!   `[N, C * H * W]`. Those are what the feature cache holds (the cache key
//!   includes the extractor's table, so they never mix with pooled features);
//!   training never runs the frozen part again;
//! - [`FeatureExtractor::trainable_tail`](super::FeatureExtractor::trainable_tail)
//!   builds the last `N` stages and the global average pool as a
//!   [`TrainableTail`] in the model's `VarStore`, under `backbone.` with the
//!   reference names below it (`backbone.layer4.0.conv1.weight`,
//!   `backbone._blocks.15._project_conv.weight`, ...), started from the
//!   extractor's values: before training, the tail of the boundary features
//!   is exactly the frozen network's pooled features. The model
//!   ([`crate::model::MultiHeadModel::with_tail`]) runs tail, trunk, heads;
//!   the optimiser trains the tail's convolutions and BatchNorm scales and
//!   shifts with the rest, and checkpoints save and restore them;
//! - BatchNorm in the tail stays in eval mode: it normalises with the
//!   pretrained running statistics, which are not updated. Micrograph sets
//!   are small and mini-batches smaller still; batch statistics of a few
//!   dozen images would be noisy and would drift away from what the
//!   pretrained weights expect.
//!
//! Memory: the cache and the training set hold the boundary activation of
//! every image, e.g. ResNet50 at 128 px with `N = 1`: 1024 x 8 x 8 floats =
//! 256 KiB per image (2048 pooled floats are 8 KiB); with `N = 2`:
//! 512 x 16 x 16 = 512 KiB. Train in mini-batches (`[training] batch_size`):
//! a full batch keeps the tail's activations of every image for the backward
//! pass. `standardise_features` cannot be combined with fine-tuning: it would
//! rescale the boundary activations the pretrained tail expects.

use tch::nn::{self, VarStore};
use tch::{Kind, Tensor};

use super::network::Network;
use crate::{Error, Result};

/// The trainable last stages of a backbone: from the flattened activation at
/// the frozen boundary to pooled features. Its variables live in the model's
/// `VarStore`, so the model's optimiser trains them and its checkpoints hold them.
pub trait TrainableTail: Send {
    /// Pooled features of boundary activations; `train` for layers that
    /// behave differently while training (the backbones' BatchNorm does not:
    /// it stays in eval mode).
    ///
    /// # Shapes
    /// `[N, in_dim]` -> `[N, out_dim]`.
    fn forward_t(&self, boundary: &Tensor, train: bool) -> Result<Tensor>;

    /// Width of the flattened boundary activation it takes.
    fn in_dim(&self) -> i64;

    /// Width of the features it gives (the trunk's or heads' input).
    fn out_dim(&self) -> i64;
}

/// Stages `first..` of a [`Network`] and its global pool, as a [`TrainableTail`].
#[derive(Debug)]
pub struct BackboneTail<N: Network> {
    net: N,
    first: usize,
    shape: [i64; 3],
}

impl<N: Network> BackboneTail<N> {
    /// Builds stages `first..` of `N` under `p` and copies their values from
    /// the variables of the same names in `frozen` (cast to `f32`, moved to
    /// `p`'s device). `shape` is `[C, H, W]` of the boundary activation.
    /// Errors when a variable's shape differs or nothing matched.
    pub fn new(p: &nn::Path, frozen: &VarStore, first: usize, shape: [i64; 3]) -> Result<Self> {
        let net = N::build(p, first);
        let mut copied = 0;
        tch::no_grad(|| -> Result<()> {
            for (name, src) in frozen.variables() {
                let Some(mut dst) = variable_at(p, &name) else { continue };
                if dst.size() != src.size() {
                    return Err(Error::Invalid(format!(
                        "{} tail: `{name}` is {:?} in the extractor but {:?} in the tail",
                        N::NAME,
                        src.size(),
                        dst.size()
                    )));
                }
                dst.copy_(&src.to_kind(Kind::Float));
                copied += 1;
            }
            Ok(())
        })?;
        if copied == 0 {
            return Err(Error::Invalid(format!(
                "{} tail: none of its variables is in the extractor's VarStore",
                N::NAME
            )));
        }
        Ok(BackboneTail { net, first, shape })
    }

    /// The first stage it holds (`STAGES - trainable_stages`).
    pub fn first_stage(&self) -> usize {
        self.first
    }

    /// `[C, H, W]` of the boundary activation it takes.
    pub fn boundary_shape(&self) -> [i64; 3] {
        self.shape
    }
}

impl<N: Network> TrainableTail for BackboneTail<N> {
    /// # Shapes
    /// `[N, C * H * W]` -> `[N, DIM]`.
    fn forward_t(&self, boundary: &Tensor, _train: bool) -> Result<Tensor> {
        let [c, h, w] = self.shape;
        let x = boundary.f_to_kind(Kind::Float)?.f_reshape([-1, c, h, w])?;
        self.net.pooled_from(&x, self.first)
    }

    fn in_dim(&self) -> i64 {
        self.shape.iter().product()
    }

    fn out_dim(&self) -> i64 {
        N::DIM
    }
}

/// The variable `name` (dotted, e.g. `layer4.0.conv1.weight`) under `p`, if any.
fn variable_at(p: &nn::Path, name: &str) -> Option<Tensor> {
    let (dirs, leaf) = name.rsplit_once('.').unwrap_or(("", name));
    let q = dirs.split('.').filter(|s| !s.is_empty()).fold(p.clone(), |q, s| q / s);
    q.get(leaf)
}
