//! Fitting: head states from the training labels, the run's choices, and
//! the trained model.

use tch::{nn, Tensor};

use super::assemble::{build_model_for, build_model_routed, encode, select_rows, FeatureScaler};
use super::choose;
use super::consistency::consistency_pairs;
use crate::config::LoadedConfig;
use crate::data::{split, Dataset};
use crate::extractor::FeatureExtractor;
use crate::head::HeadState;
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::train::{self, Batch, TrainOutcome};
use crate::{Error, Result};

pub(crate) use super::parts::FitData;

/// A model fitted on some rows of a data set ([`fit_rows`]).
pub(crate) struct Fitted {
    pub(crate) vs: nn::VarStore,
    pub(crate) model: MultiHeadModel,
    pub(crate) scaler: FeatureScaler,
    pub(crate) states: Vec<HeadState>,
    pub(crate) choices: choose::Choices,
    pub(crate) outcome: TrainOutcome,
}

impl Fitted {
    /// Standardised features of the rows `idx` of `features`.
    pub(crate) fn rows(&self, features: &Tensor, idx: &[usize]) -> Tensor {
        self.scaler.apply(&select_rows(features, idx))
    }
}

/// Fits head states on the training rows of `parts` (with image rows added
/// for the heads that train on images, [`super::tile_fit`]), makes the run's
/// choices, builds the model and trains it on `parts.train` (validating on
/// `parts.val`). Every row of `rows.data` is encoded first, so a label a
/// head cannot use is an error naming its line before training.
pub(crate) fn fit_rows(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    snapshots: &mut dyn train::Checkpointer,
    progress: &mut dyn Progress,
) -> Result<Fitted> {
    fit_with(cfg, extractor, rows, parts, None, snapshots, progress)
}

/// [`fit_rows`] with the choices (taps, weight decays) of an earlier fit
/// instead of choosing them by validation: one training per head, no
/// search. `semi_supervised = "auto"` fits its folds so.
pub(crate) fn fit_rows_as(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    choices: &choose::Choices,
    progress: &mut dyn Progress,
) -> Result<Fitted> {
    fit_with(cfg, extractor, rows, parts, Some(choices), &mut train::NoCheckpoints, progress)
}

fn fit_with(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    given: Option<&choose::Choices>,
    snapshots: &mut dyn train::Checkpointer,
    progress: &mut dyn Progress,
) -> Result<Fitted> {
    let c = &cfg.config;
    let t = &c.training;
    // Tiled: the heads that train on images get one row per image ([data] tile_fit).
    let pooled = super::tile_fit::pool_images(c, rows, parts)?;
    let pooled_rows = pooled.as_ref().map(|p| p.rows(rows.layout));
    let (rows, parts) = match (&pooled, &pooled_rows) {
        (Some(p), Some(r)) => (r, &p.parts),
        _ => (rows, parts),
    };
    let (data, features) = (rows.data, rows.features);
    let (train_set, val_set) = (data.subset(&parts.train), data.subset(&parts.val));
    let states = c
        .heads
        .iter()
        .map(|h| {
            let labels = train_set.labels(h.column())?;
            h.fit(&labels).map_err(|e| train_set.label_error(h.column(), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let device = t.device.resolve()?;
    let in_dim = features.size()[1];
    // A first build checks the heads and encodes the labels; the model that
    // trains is built once the choices (taps, weight decay) are made.
    let (_, probe, mut scaler) = build_model_for(c, Some(extractor), &states, in_dim, device)?;
    consistency_pairs(c, &probe).map_err(|e| cfg.error_at("[[consistency]]", e.to_string()))?;
    if probe.tail().is_some() && t.batch_size == 0 {
        tracing::warn!(
            "extractor.trainable_stages > 0 with training.batch_size = 0: every step runs the trainable \
             stages on all {} training images at once; set training.batch_size (e.g. 32) to bound memory",
            parts.train.len()
        );
    }
    if t.standardise() {
        scaler.fit(&select_rows(features, rows.scale_rows.unwrap_or(&parts.train)));
    }
    let (choices, init) = match given {
        Some(choices) => (choices.clone(), Vec::new()),
        None => choose_for(cfg, &probe, &scaler, &states, rows, parts, device, progress)?,
    };
    tch::manual_seed(t.seed as i64);
    let routes = choices.routes(c.trunk.is_some())?;
    let (vs, model, mut final_scaler) =
        build_model_routed(c, Some(extractor), &states, in_dim, routes, device)?;
    tch::no_grad(|| final_scaler.copy_from(&scaler));
    choose::apply_init(&vs, &init);
    let batch = |idx: &[usize], set: &Dataset| -> Result<Batch> {
        Ok(Batch {
            features: scaler.apply(&select_rows(features, idx)),
            targets: encode(&model, c, set, device)?,
        })
    };
    let train_batch = batch(&parts.train, &train_set)?;
    let val_batch = batch(&parts.val, &val_set)?;
    let val = (!val_batch.is_empty()).then_some(&val_batch);
    let outcome =
        train::train_with(&model, &vs, &train_batch, val, t, &choices.decay(), snapshots, progress)?;
    Ok(Fitted { vs, model, scaler: final_scaler, states, choices, outcome })
}

/// The run's choices by validation ([`choose::choose`]) on the rows of `parts`.
#[allow(clippy::too_many_arguments)]
fn choose_for(
    cfg: &LoadedConfig,
    probe: &MultiHeadModel,
    scaler: &FeatureScaler,
    states: &[HeadState],
    rows: &FitData,
    parts: &split::Split,
    device: tch::Device,
    progress: &mut dyn Progress,
) -> Result<choose::Chosen> {
    let c = &cfg.config;
    let all_targets = encode(probe, c, rows.data, device)?;
    let exact = super::exact::exact_heads(c, probe);
    let scaled = scaler.apply(rows.features);
    choose::choose(
        &choose::Problem {
            config: c,
            states,
            layout: rows.layout,
            features: &scaled,
            targets: &all_targets,
            data: rows.data,
            strata: rows.strata,
            groups: rows.groups,
            base: rows.base,
            train: &parts.train,
            val: &parts.val,
            device,
            exact: &exact,
        },
        progress,
    )
    .map_err(|e| match e {
        Error::Invalid(m) => cfg.error_at_key("taps", 0, m),
        other => other,
    })
}
