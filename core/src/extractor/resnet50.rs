//! The `resnet50` extractor: torchvision's ResNet50 without its classifier
//! (tch's `resnet50_no_final_layer`), frozen, BatchNorm in eval mode,
//! 2048 globally average-pooled features per image.
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
//! not needed. The README says how to make one from torchvision.

use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::Tensor;

use super::frozen::{BackboneConfig, Frozen};
use super::weights::KeyRules;
use super::{BuildContext, ExtractorConfig, FeatureExtractor, InputSpec};
use crate::Result;

/// Width of ResNet50's pooled features.
pub const RESNET50_DIM: i64 = 2048;

/// The `[extractor]` table with `type = "resnet50"`; see [`BackboneConfig`] for its keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResNet50Config(pub BackboneConfig);

#[typetag::serde(name = "resnet50")]
impl ExtractorConfig for ResNet50Config {
    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn FeatureExtractor>> {
        Ok(Box::new(ResNet50::new(&self.0, ctx)?))
    }

    fn input_size(&self) -> i64 {
        self.0.size
    }
}

/// A frozen ResNet50 feature extractor.
#[derive(Debug)]
pub struct ResNet50 {
    frozen: Frozen,
    net: Box<dyn ModuleT>,
}

impl ResNet50 {
    /// Builds the network and loads the configured weights (checking every tensor).
    pub fn new(cfg: &BackboneConfig, ctx: &BuildContext) -> Result<Self> {
        let rules = KeyRules { unused_ok: &["fc."], optional: &[] };
        let (frozen, net) = Frozen::build("resnet50", cfg, ctx, rules, |p| {
            Box::new(tch::vision::resnet::resnet50_no_final_layer(p)) as Box<dyn ModuleT>
        })?;
        Ok(ResNet50 { frozen, net })
    }

    /// The network's variables (frozen), e.g. to inspect their dtype or device.
    pub fn var_store(&self) -> &tch::nn::VarStore {
        &self.frozen.vs
    }
}

impl FeatureExtractor for ResNet50 {
    fn input_spec(&self) -> InputSpec {
        self.frozen.spec.clone()
    }

    fn output_dim(&self) -> i64 {
        RESNET50_DIM
    }

    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` in `[0, 1]` -> `[N, 2048]`, `f32`, CPU.
    fn extract(&self, images: &Tensor) -> Result<Tensor> {
        self.frozen.run(images, |x| self.net.forward_t(x, false))
    }

    fn weights_sha256(&self) -> Option<String> {
        self.frozen.weights.as_ref().map(|w| w.sha256.clone())
    }

    fn batch_size(&self) -> usize {
        self.frozen.batch_size
    }
}
