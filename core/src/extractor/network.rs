//! The network architectures a [`Backbone`](super::frozen::Backbone) runs:
//! [`Network`], the trait both the frozen runner and the trainable tail
//! ([`super::trainable`]) build on.

use tch::{nn, Tensor};

use super::weights::KeyRules;
use crate::Result;

/// A network architecture that a [`Backbone`](super::frozen::Backbone) builds, loads and runs.
///
/// The network is a stem, [`Network::STAGES`] stages and a global average
/// pool. [`Network::build`] can make only the last stages (the trainable tail
/// of partial fine-tuning, [`super::trainable`]), under the same names.
pub trait Network: std::fmt::Debug + Send + Sized + 'static {
    /// Its `type` name, for messages.
    const NAME: &'static str;
    /// Width `D` of its features.
    const DIM: i64;
    /// Which tensor names of a weights file it can do without.
    const RULES: KeyRules<'static>;
    /// Its stages, the most that `trainable_stages` may unfreeze.
    const STAGES: usize;
    /// Its tap names, shallow to deep (see [`super::taps`]).
    const TAPS: &'static [&'static str];
    /// The channels of each tap's activation.
    const TAP_CHANNELS: &'static [i64];

    /// Makes the variables of stages `first..STAGES` under `p`, named as its
    /// reference state dict; the stem (and anything else outside the stages,
    /// such as a classifier) only when `first == 0`.
    fn build(p: &nn::Path, first: usize) -> Self;

    /// Makes the whole network under `p`: [`Network::build`] from stage 0.
    fn new(p: &nn::Path) -> Self {
        Self::build(p, 0)
    }

    /// The stem and stages `..end`, in eval mode: the activation at the
    /// boundary after stage `end - 1`. Meant for a network built from stage 0
    /// (one built from a later stage has no stem and skips the stages it lacks).
    ///
    /// # Shapes
    /// `[N, 3, H, W]`, normalised -> `[N, C, H', W']`.
    fn boundary(&self, x: &Tensor, end: usize) -> Result<Tensor>;

    /// Stages `start..` on a boundary activation, then the global average
    /// pool, in eval mode (BatchNorm uses its running statistics). Needs the
    /// network built from stage `start` or earlier.
    ///
    /// # Shapes
    /// `[N, C, H', W']` -> `[N, DIM]`.
    fn pooled_from(&self, h: &Tensor, start: usize) -> Result<Tensor>;

    /// Runs the network, in eval mode, as far as tap `deepest` (an index of
    /// [`Network::TAPS`]), calling `tap(i, activation)` at each tap `i <= deepest`
    /// in order (an error of `tap` stops the run). Meant for a network built
    /// from stage 0.
    ///
    /// # Shapes
    /// `[N, 3, H, W]`, normalised -> one `[N, TAP_CHANNELS[i], H_i, W_i]` per tap.
    fn tapped(
        &self,
        x: &Tensor,
        deepest: usize,
        tap: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()>;

    /// Pooled features, in eval mode: every stage, then the pool.
    ///
    /// # Shapes
    /// `[N, 3, H, W]`, normalised -> `[N, DIM]`.
    fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.pooled_from(&self.boundary(x, Self::STAGES)?, Self::STAGES)
    }
}
