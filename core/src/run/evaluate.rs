//! Evaluation: the model's predictions for scored rows (per image, and per
//! tile for a tiled run) and their scores against the labels.

use serde_json::Value;
use tch::{Device, Tensor};

use super::aggregate;
use super::consistency::{consistency, Consistency};
use crate::config::RunConfig;
use crate::data::prepare::{DataSummary, RowPlan};
use crate::data::Dataset;
use crate::head::{HeadConfig, HeadScore, Prediction};
use crate::model::MultiHeadModel;
use crate::Result;

/// One head's line of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeadSummary {
    /// Head name.
    pub name: String,
    /// Head type (`classification`, `regression`, ...).
    pub kind: String,
    /// The head's score on the scored rows.
    pub score: HeadScore,
}

/// Scores of a model on labelled rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    /// Per head, in model order.
    pub heads: Vec<HeadSummary>,
    /// Sum of the discrete heads' error rates (the thesis's "cumulative error").
    pub cumulative_error: Option<f64>,
    /// Fraction of samples that every head with a verdict got right.
    pub exact_match_rate: Option<f64>,
    /// The heads [`exact_match_rate`](Self::exact_match_rate) covers: discrete
    /// heads, and value heads with a `tolerance` (the others give no verdict).
    pub exact_match_heads: Vec<String>,
    /// Agreement of value heads with the heads predicting their bins.
    pub consistency: Vec<Consistency>,
    /// Rows scored.
    pub n: usize,
    /// Tiled runs: the same scores per tile (the scores above are per image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<Box<Evaluation>>,
    /// How the scored images were read (set by [`super::train_run`] and [`super::SavedRun::evaluate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSummary>,
}

pub(crate) fn head_type(h: &dyn HeadConfig) -> String {
    serde_json::to_value(h)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Predictions of every head for `features`, in evaluation mode.
pub fn predict_features(model: &MultiHeadModel, features: &Tensor) -> Result<Vec<Vec<Prediction>>> {
    tch::no_grad(|| {
        let outputs = model.forward_eval(features)?;
        model.heads().iter().zip(&outputs).map(|(h, o)| h.decode(&o.f_to_device(Device::Cpu)?)).collect()
    })
}

/// Scores per-head predictions against the labels of `data`.
pub fn evaluate(
    config: &RunConfig,
    model: &MultiHeadModel,
    predictions: &[Vec<Prediction>],
    data: &Dataset,
) -> Result<Evaluation> {
    let mut heads = Vec::new();
    for ((head, cfg), preds) in model.heads().iter().zip(&config.heads).zip(predictions) {
        let labels = data.labels(cfg.column())?;
        let score = head.score(preds, &labels).map_err(|e| data.label_error(cfg.column(), e))?;
        heads.push(HeadSummary { name: cfg.name().to_string(), kind: head_type(cfg.as_ref()), score });
    }
    let rates: Vec<f64> = heads.iter().filter_map(|h| h.score.error_rate).collect();
    let cumulative_error = (!rates.is_empty()).then(|| rates.iter().sum());
    let mut judged = 0usize;
    let mut right = 0usize;
    for i in 0..data.len() {
        let verdicts: Vec<bool> =
            heads.iter().filter_map(|h| h.score.correct.get(i).copied().flatten()).collect();
        if !verdicts.is_empty() {
            judged += 1;
            right += verdicts.iter().all(|&v| v) as usize;
        }
    }
    let exact_match_rate = (judged > 0).then(|| right as f64 / judged as f64);
    let exact_match_heads = heads
        .iter()
        .filter(|h| h.score.correct.iter().any(Option::is_some))
        .map(|h| h.name.clone())
        .collect();
    let consistency = consistency(config, model, predictions, data)?;
    Ok(Evaluation {
        heads,
        cumulative_error,
        exact_match_rate,
        exact_match_heads,
        consistency,
        n: data.len(),
        tiles: None,
        data: None,
    })
}

/// What [`predict_images`] returns.
#[derive(Debug, Clone)]
pub struct ImagePredictions {
    /// Per head, one prediction per image.
    pub predictions: Vec<Vec<Prediction>>,
    /// Every head's outputs per plain row (a row averaged over its views
    /// where the plan has them).
    pub rows: aggregate::RowOutputs,
    /// The plan of those plain rows.
    pub plan: RowPlan,
    /// Tiled runs: the per-image aggregates of the tiles.
    pub aggregated: Option<aggregate::Aggregated>,
}

/// Per-image predictions of the rows `features` (laid out by `plan`, over
/// the images of `data`). Where the plan has `[data] augment` views, each
/// plain row's prediction is first averaged over it and its views
/// (test-time augmentation, [`aggregate::average_views`]); then a run without
/// tiles has one row per image, and a tiled one aggregates its tiles per
/// image ([`aggregate`]).
pub fn predict_images(model: &MultiHeadModel, features: &Tensor, plan: &RowPlan) -> Result<ImagePredictions> {
    let rows = aggregate::predict_rows(model, features)?;
    let (rows, plan) = if plan.augmented() {
        (aggregate::average_views(model.heads(), &rows, &plan.views()), plan.plain().0)
    } else {
        (rows, plan.clone())
    };
    let aggregated = plan.tiled.then(|| aggregate::aggregate(model.heads(), &rows, &plan.groups()));
    let predictions = match &aggregated {
        Some(a) => a.predictions.clone(),
        None => rows.predictions.clone(),
    };
    Ok(ImagePredictions { predictions, rows, plan, aggregated })
}

impl ImagePredictions {
    /// The per-image aggregates of a tiled run, for `predictions.csv`, with
    /// each tile's row when `tiles`.
    pub fn tiled_rows(&self, tiles: bool) -> Option<aggregate::TiledRows<'_>> {
        self.aggregated.as_ref().map(|a| aggregate::TiledRows {
            aggregated: a,
            tiles: tiles.then_some((&self.plan, self.rows.predictions.as_slice())),
        })
    }
}

/// [`predict_images`] scored against the labels of `data`: per image, and
/// (tiled) per tile in [`Evaluation::tiles`].
pub(crate) fn score_images(
    config: &RunConfig,
    model: &MultiHeadModel,
    features: &Tensor,
    data: &Dataset,
    plan: &RowPlan,
) -> Result<(Evaluation, ImagePredictions)> {
    let predicted = predict_images(model, features, plan)?;
    let mut evaluation = evaluate(config, model, &predicted.predictions, data)?;
    if predicted.aggregated.is_some() {
        let tiles = data.subset(&predicted.plan.image);
        let per_tile = evaluate(config, model, &predicted.rows.predictions, &tiles)?;
        evaluation.tiles = Some(Box::new(per_tile));
    }
    Ok((evaluation, predicted))
}
