//! Model assembly: the feature standardisation, the trunk and heads built
//! from the config and fitted head states, and the heads' encoded targets.

use tch::{nn, Device, Kind, Tensor};

use crate::config::{LossWeighting, RunConfig};
use crate::data::Dataset;
use crate::extractor::FeatureExtractor;
use crate::head::{HeadConfig, HeadState, Targets};
use crate::model::{MultiHeadModel, Routes};
use crate::{Error, Result};

/// Per-feature standardisation of the extractor's output, fitted on the
/// training rows and stored with the model (`input.mean`, `input.std`, not
/// trained). Frozen features have very different scales per dimension;
/// standardising them makes the heads train faster and more evenly.
#[derive(Debug)]
pub struct FeatureScaler {
    mean: Tensor,
    std: Tensor,
}

impl FeatureScaler {
    fn new(p: nn::Path, dim: i64) -> Self {
        FeatureScaler { mean: p.zeros_no_train("mean", &[dim]), std: p.ones_no_train("std", &[dim]) }
    }

    /// Takes the mean and standard deviation of `other` (the same width).
    pub fn copy_from(&mut self, other: &FeatureScaler) {
        self.mean.copy_(&other.mean);
        self.std.copy_(&other.std);
    }

    /// Sets mean and standard deviation from `features` (`[N, D]`); constant
    /// dimensions keep a scale of 1.
    pub fn fit(&mut self, features: &Tensor) {
        tch::no_grad(|| {
            let x = features.to_device(self.mean.device()).to_kind(Kind::Float);
            let std = x.std_dim(0, false, false);
            let std = std.where_self(&std.gt(1e-6), &std.ones_like());
            self.mean.copy_(&x.mean_dim(0, false, Kind::Float));
            self.std.copy_(&std);
        });
    }

    /// Standardised features.
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, D]`, on the scaler's device.
    pub fn apply(&self, features: &Tensor) -> Tensor {
        (features.to_device(self.mean.device()) - &self.mean) / &self.std
    }
}

/// Builds the model of `config` with fitted head `states` in a new VarStore on
/// `device`, with its (identity until fitted) [`FeatureScaler`]. For a fully
/// frozen extractor; one with `trainable_stages > 0` needs
/// [`build_model_for`], which this refuses to stand in for.
pub fn build_model(
    config: &RunConfig,
    states: &[HeadState],
    in_dim: i64,
    device: Device,
) -> Result<(nn::VarStore, MultiHeadModel, FeatureScaler)> {
    build_model_for(config, None, states, in_dim, device)
}

/// Builds the model of `config` like [`build_model`], with the trainable
/// tail of `extractor` (partial fine-tuning, `trainable_stages > 0`) under
/// `backbone` in the model's VarStore, started from the extractor's values.
/// `in_dim` is the width of the extractor's features (the boundary
/// activation, with a tail); the trunk and heads get the tail's output.
///
/// Errors when the config asks for trainable stages but `extractor` is `None`
/// or has no tail, when the tail does not take `in_dim` features, and when
/// `standardise_features` is on together with a tail (standardising the
/// boundary activations would feed the pretrained tail inputs it was never
/// trained on).
pub fn build_model_for(
    config: &RunConfig,
    extractor: Option<&dyn FeatureExtractor>,
    states: &[HeadState],
    in_dim: i64,
    device: Device,
) -> Result<(nn::VarStore, MultiHeadModel, FeatureScaler)> {
    build_model_routed(config, extractor, states, in_dim, Routes::default(), device)
}

/// [`build_model_for`] with the trunk and heads reading the feature columns
/// `routes` gives (the taps chosen for them, [`crate::results::choices::Choices::routes`]).
pub fn build_model_routed(
    config: &RunConfig,
    extractor: Option<&dyn FeatureExtractor>,
    states: &[HeadState],
    in_dim: i64,
    routes: Routes,
    device: Device,
) -> Result<(nn::VarStore, MultiHeadModel, FeatureScaler)> {
    let vs = nn::VarStore::new(device);
    let stages = config.extractor.trainable_stages();
    let tail = match extractor {
        Some(e) if stages > 0 => e.trainable_tail(&(vs.root() / "backbone"))?,
        _ => None,
    };
    if stages > 0 {
        let Some(tail) = &tail else {
            return Err(Error::Invalid(format!(
                "extractor.trainable_stages = {stages}: the model needs the built extractor to make its \
                 trainable stages (build_model_for)"
            )));
        };
        if let Some(m) = config.standardise_conflict() {
            return Err(Error::Invalid(m));
        }
        if tail.in_dim() != in_dim {
            return Err(Error::Invalid(format!(
                "the extractor's trainable stages take {} features per image, the model was given {in_dim}",
                tail.in_dim()
            )));
        }
    }
    let heads: Vec<(&dyn HeadConfig, HeadState)> =
        config.heads.iter().map(|h| h.as_ref()).zip(states.iter().cloned()).collect();
    let mut model = match tail {
        Some(tail) => {
            MultiHeadModel::new(&vs.root(), tail.out_dim(), config.trunk.as_ref(), &heads)?.with_tail(tail)?
        }
        None => MultiHeadModel::routed(&vs.root(), in_dim, config.trunk.as_ref(), &heads, routes)?,
    };
    if config.training.loss_weighting == LossWeighting::Uncertainty {
        model = model.with_learned_weights(&(vs.root() / "loss_weighting"));
    }
    let scaler = FeatureScaler::new(vs.root() / "input", in_dim);
    Ok((vs, model, scaler))
}

/// Encodes every head's labels for the rows of `data`.
pub(crate) fn encode(
    model: &MultiHeadModel,
    config: &RunConfig,
    data: &Dataset,
    device: Device,
) -> Result<Vec<Targets>> {
    model
        .heads()
        .iter()
        .zip(&config.heads)
        .map(|(head, cfg)| {
            let labels = data.labels(cfg.column())?;
            let t = head.encode(&labels).map_err(|e| data.label_error(cfg.column(), e))?;
            Ok(Targets { values: t.values.to_device(device), mask: t.mask.to_device(device) })
        })
        .collect()
}

/// Rows `idx` of `features`.
pub(crate) fn select_rows(features: &Tensor, idx: &[usize]) -> Tensor {
    let idx = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
    features.index_select(0, &idx.to_device(features.device()))
}
