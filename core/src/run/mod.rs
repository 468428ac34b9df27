//! A run end to end: data, cached features, split, training, evaluation and
//! the run folder (`config.toml`, `metrics.json`, `history.csv`,
//! `predictions.csv`, `checkpoint/`, plots and `report.html`).
//!
//! The run folder is built as `.<name>.partial` beside its final place and
//! renamed at the very end, so a folder named like a run is always complete;
//! the partial folder holds the resumable snapshot that `--resume` continues.

pub mod aggregate;
pub mod checkpoint;
pub mod choose;
pub mod features;
pub mod folds;
pub mod output;
pub mod warnings;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{LoadedConfig, LossWeighting, RunConfig};
use crate::data::prepare::{DataSummary, RowPlan};
use crate::data::{split, Dataset};
use crate::extractor::FeatureExtractor;
use crate::head::{HeadConfig, HeadScore, HeadState, Prediction, Targets};
use crate::model::{MultiHeadModel, Routes};
use crate::progress::Progress;
use crate::train::{self, Batch, EpochRecord, TrainOutcome};
use crate::{fsutil, Error, Result};

pub use checkpoint::CheckpointState;
pub use features::{features_for, Features};

/// Options of [`train_run`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run folder to make.
    pub out: PathBuf,
    /// Continue from the snapshot of an interrupted run into the same folder.
    pub resume: bool,
    /// Replace an existing run folder.
    pub force: bool,
    /// Write plots and `report.html`.
    pub report: bool,
}

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
    /// How the scored images were read (set by [`train_run`] and [`SavedRun::evaluate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSummary>,
}

/// Options of [`SavedRun::predict_with`].
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Also write each tile's row (tiled runs).
    pub tiles: bool,
    /// The images' micrometres per pixel, for a run with `data.pixel_size`.
    pub pixel_size: Option<f64>,
    /// Add every class's probability as columns `<head>_p_<class>` to the CSV.
    pub probabilities: bool,
}

/// What [`SavedRun::predict_table`] returns.
#[derive(Debug, Clone)]
pub struct Predicted {
    /// The images predicted (files, and the images inside folders).
    pub images: Dataset,
    /// One prediction (and class probabilities) per image.
    pub table: output::PredictionTable,
    /// The CSV text, as `predictions.csv` writes it.
    pub csv: String,
}

/// How a value head's predictions, rounded to the nearest class centre, agree
/// with a class head's (see [`crate::config::ConsistencyPair`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Consistency {
    /// The value head.
    pub value: String,
    /// The class head.
    pub class: String,
    /// Fraction of rows where the rounded value is the class head's prediction.
    pub agreement: f64,
    /// Fraction of labelled rows where the rounded value is not the true class.
    pub rounded_error: Option<f64>,
    /// Rows compared.
    pub n: usize,
}

/// A value head, a class head and each class's centre.
#[derive(Debug, Clone)]
struct Pair {
    value: usize,
    class: usize,
    centres: Vec<(String, f64)>,
}

/// The pairs [`Consistency`] is computed for: the config's `[[consistency]]`
/// list, or (when it is empty) every head without classes paired with every
/// class head whose class names are all numbers. Errors name the
/// `[[consistency]]` entry that does not fit the model.
fn consistency_pairs(config: &RunConfig, model: &MultiHeadModel) -> Result<Vec<Pair>> {
    let heads = model.heads();
    let numeric = |classes: &[String]| -> Option<Vec<(String, f64)>> {
        classes.iter().map(|c| c.trim().parse::<f64>().ok().map(|v| (c.clone(), v))).collect()
    };
    if config.consistency.is_empty() {
        let mut pairs = Vec::new();
        for (class, h) in heads.iter().enumerate() {
            let Some(centres) = h.classes().and_then(numeric) else { continue };
            for (value, v) in heads.iter().enumerate() {
                if v.classes().is_none() {
                    pairs.push(Pair { value, class, centres: centres.clone() });
                }
            }
        }
        return Ok(pairs);
    }
    let index = |name: &str, role: &str| {
        heads.iter().position(|h| h.name() == name).ok_or_else(|| {
            Error::Invalid(format!("[[consistency]] {role} = \"{name}\": the model has no head of that name"))
        })
    };
    config
        .consistency
        .iter()
        .map(|p| {
            let (value, class) = (index(&p.value, "value")?, index(&p.class, "class")?);
            let Some(classes) = heads[class].classes() else {
                return Err(Error::Invalid(format!(
                    "[[consistency]] class = \"{}\": that head does not predict classes",
                    p.class
                )));
            };
            let centres = match &p.centres {
                Some(map) => classes
                    .iter()
                    .map(|c| {
                        map.get(c).map(|v| (c.clone(), *v)).ok_or_else(|| {
                            Error::Invalid(format!(
                                "[[consistency]] class = \"{}\": `centres` has no entry for class `{c}`",
                                p.class
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => numeric(classes).ok_or_else(|| {
                    Error::Invalid(format!(
                        "[[consistency]] class = \"{}\": its classes ({}) are not all numbers; give `centres`",
                        p.class,
                        classes.join(", ")
                    ))
                })?,
            };
            Ok(Pair { value, class, centres })
        })
        .collect()
}

/// The class whose centre is nearest to `value` (the first of equals).
fn nearest_class(centres: &[(String, f64)], value: f64) -> Option<&str> {
    centres.iter().min_by(|a, b| (a.1 - value).abs().total_cmp(&(b.1 - value).abs())).map(|c| c.0.as_str())
}

/// [`Consistency`] of each pair over the rows of `data`.
fn consistency(
    config: &RunConfig,
    model: &MultiHeadModel,
    predictions: &[Vec<Prediction>],
    data: &Dataset,
) -> Result<Vec<Consistency>> {
    let mut out = Vec::new();
    for pair in consistency_pairs(config, model)? {
        let truth = data.labels(config.heads[pair.class].column()).ok();
        let (mut n, mut agree, mut labelled, mut wrong) = (0usize, 0usize, 0usize, 0usize);
        for (i, (v, c)) in predictions[pair.value].iter().zip(&predictions[pair.class]).enumerate() {
            let (Prediction::Value { value, .. }, Prediction::Class { label, .. }) = (v, c) else { continue };
            let Some(rounded) = nearest_class(&pair.centres, *value) else { continue };
            n += 1;
            agree += (rounded == label) as usize;
            if let Some(t) = truth.as_ref().and_then(|t| crate::head::cell(t[i])) {
                labelled += 1;
                wrong += (rounded != t) as usize;
            }
        }
        if n > 0 {
            out.push(Consistency {
                value: model.heads()[pair.value].name().to_string(),
                class: model.heads()[pair.class].name().to_string(),
                agreement: agree as f64 / n as f64,
                rounded_error: (labelled > 0).then(|| wrong as f64 / labelled as f64),
                n,
            });
        }
    }
    Ok(out)
}

/// The result of [`train_run`].
#[derive(Debug)]
pub struct RunSummary {
    /// The finished run folder.
    pub dir: PathBuf,
    /// Test scores.
    pub evaluation: Evaluation,
    /// The training outcome.
    pub outcome: TrainOutcome,
    /// Rows extracted now vs found in the feature cache.
    pub cache: crate::features::CacheStats,
    /// The taps and weight decays chosen.
    pub choices: choose::Choices,
    /// Warnings about the data and split (also logged and in `metrics.json`).
    pub warnings: Vec<String>,
    /// Notes on the settings (validation part, early stopping; in `metrics.json`).
    pub notes: Vec<String>,
    /// The cross-validation, with `training.folds` (`metrics.json`'s `cross_validation`).
    pub cross_validation: Option<folds::CvSummary>,
    /// How the images were read.
    pub data: DataSummary,
}

/// The columns of the heads that stratify the split (the discrete ones).
pub(crate) fn strata(config: &RunConfig, data: &Dataset) -> Result<Vec<String>> {
    let mut cols = Vec::new();
    for h in &config.heads {
        if h.stratify() {
            cols.push(data.labels(h.column())?);
        }
    }
    Ok((0..data.len())
        .map(|i| cols.iter().map(|c| c[i].unwrap_or("")).collect::<Vec<_>>().join("\u{1f}"))
        .collect())
}

/// Checks that every head's column is in the data, naming the head's TOML line if not.
pub(crate) fn check_columns(cfg: &LoadedConfig, data: &Dataset) -> Result<()> {
    for h in &cfg.config.heads {
        if !data.columns.contains_key(h.column()) {
            return Err(cfg.error_at(
                &format!("\"{}\"", h.name()),
                format!(
                    "head `{}` reads column `{}`, which {} does not have (columns: {})",
                    h.name(),
                    h.column(),
                    data.source.display(),
                    data.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn head_type(h: &dyn HeadConfig) -> String {
    serde_json::to_value(h)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

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
/// `routes` gives (the taps chosen for them, [`choose::Choices::routes`]).
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

/// Predictions of every head for `features`, in evaluation mode.
pub fn predict_features(model: &MultiHeadModel, features: &Tensor) -> Vec<Vec<Prediction>> {
    tch::no_grad(|| {
        let outputs = model.forward_eval(features);
        model.heads().iter().zip(&outputs).map(|(h, o)| h.decode(&o.to_device(Device::Cpu))).collect()
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

/// Per-image predictions of the rows `features` (laid out by `plan`, over
/// the images of `data`): the rows' own for a run without tiles, aggregated
/// per image ([`aggregate`]) for a tiled one, with the rows' outputs.
pub fn predict_images(
    model: &MultiHeadModel,
    features: &Tensor,
    plan: &RowPlan,
) -> (Vec<Vec<Prediction>>, Option<aggregate::Tiled>) {
    if !plan.tiled {
        return (predict_features(model, features), None);
    }
    let rows = aggregate::predict_rows(model, features);
    let agg = aggregate::aggregate(model.heads(), &rows, &plan.groups());
    (agg.predictions.clone(), Some((agg, rows)))
}

/// [`predict_images`] scored against the labels of `data`: per image, and
/// (tiled) per tile in [`Evaluation::tiles`].
fn score_images(
    config: &RunConfig,
    model: &MultiHeadModel,
    features: &Tensor,
    data: &Dataset,
    plan: &RowPlan,
) -> Result<(Evaluation, Vec<Vec<Prediction>>, Option<aggregate::Tiled>)> {
    let (predictions, tiled) = predict_images(model, features, plan);
    let mut evaluation = evaluate(config, model, &predictions, data)?;
    if let Some((_, rows)) = &tiled {
        let per_tile = evaluate(config, model, &rows.predictions, &data.subset(&plan.image))?;
        evaluation.tiles = Some(Box::new(per_tile));
    }
    Ok((evaluation, predictions, tiled))
}

fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    out.with_file_name(format!(".{name}.partial"))
}

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

/// Rows `idx` of `features`.
pub(crate) fn select_rows(features: &Tensor, idx: &[usize]) -> Tensor {
    let idx = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
    features.index_select(0, &idx.to_device(features.device()))
}

/// What [`fit_rows`] fits on: the rows of a data set with their features.
pub(crate) struct FitData<'a> {
    pub(crate) data: &'a Dataset,
    pub(crate) features: &'a Tensor,
    pub(crate) layout: &'a crate::extractor::taps::TapLayout,
    pub(crate) strata: &'a [String],
    /// The image of each row, when rows are tiles (k-fold keeps an image's tiles together).
    pub(crate) groups: Option<&'a [usize]>,
}

/// Fits head states on the training rows of `parts`, makes the run's
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
    let c = &cfg.config;
    let t = &c.training;
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
        scaler.fit(&select_rows(features, &parts.train));
    }
    let all_targets = encode(&probe, c, data, device)?;
    let scaled = scaler.apply(features);
    let (choices, init) = choose::choose(
        &choose::Problem {
            config: c,
            states: &states,
            layout: rows.layout,
            features: &scaled,
            targets: &all_targets,
            data,
            strata: rows.strata,
            groups: rows.groups,
            train: &parts.train,
            val: &parts.val,
            device,
        },
        progress,
    )
    .map_err(|e| match e {
        Error::Invalid(m) => cfg.error_at_key("taps", 0, m),
        other => other,
    })?;
    drop((all_targets, scaled));
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

/// The validation part of the rows `rows` (indices into the whole set),
/// by `training.validation_fraction` or its default for that many rows,
/// stratified; returns (training rows, validation rows, why the default).
pub(crate) fn validation_split(
    t: &crate::config::TrainingConfig,
    strata: &[String],
    rows: &[usize],
) -> (Vec<usize>, Vec<usize>, Option<String>) {
    let (fraction, why) = t.validation_fraction_for(rows.len());
    let sub: Vec<String> = rows.iter().map(|&i| strata[i].clone()).collect();
    let inner = split::stratified(&sub, 0.0, fraction, t.seed);
    let map = |v: &[usize]| v.iter().map(|&i| rows[i]).collect::<Vec<_>>();
    (map(&inner.train), map(&inner.val), why)
}

/// Trains the run `cfg` describes and writes its run folder. With
/// `training.folds`, cross-validates first ([`folds`]).
pub fn train_run(cfg: &LoadedConfig, opts: &TrainOptions, progress: &mut dyn Progress) -> Result<RunSummary> {
    let c = &cfg.config;
    if opts.out.exists() && !opts.force {
        return Err(Error::io(
            &opts.out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (use --force to replace it)",
            ),
        ));
    }
    crate::runtime::apply_config_threads(&c.runtime);
    let images = Dataset::load(&c.data, &cfg.dir())?;
    check_columns(cfg, &images)?;
    let extractor = c.extractor.build(&cfg.build_context())?;
    let weights_sha256 = extractor.weights_sha256();
    let Features { features, layout, stats: cache, plan, summary } =
        features_for(cfg, extractor.as_ref(), &images, progress)?;
    let t = &c.training;
    // The split is by image; with tiles, each image's rows (tiles) follow it.
    let image_strata = strata(c, &images)?;
    let mut cv = match t.folds {
        Some(k) => Some(folds::cross_validate(
            cfg,
            extractor.as_ref(),
            &images,
            &features,
            &layout,
            &image_strata,
            k,
            progress,
        )?),
        None => None,
    };
    let (image_parts, why_val) = match &cv {
        // The final model: every labelled image (less the validation part, if any).
        Some(_) => {
            let all: Vec<usize> = (0..images.len()).collect();
            let (train, val, why) = validation_split(t, &image_strata, &all);
            (split::Split { train, val, test: Vec::new() }, why)
        }
        None => {
            let rest =
                images.len() - split::stratified(&image_strata, t.test_fraction, 0.0, t.seed).test.len();
            let (validation_fraction, why) = t.validation_fraction_for(rest);
            (split::stratified(&image_strata, t.test_fraction, validation_fraction, t.seed), why)
        }
    };
    let mut warnings = warnings::split_warnings(c, &images, &image_parts)?;
    if let Some(cv) = &cv {
        warnings.extend(cv.warnings.iter().cloned());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut notes = vec![warnings::early_stopping_note(c, image_parts.val.len(), why_val.as_deref())];
    if let Some(cv) = &mut cv {
        notes.push(cv.final_model_note(image_parts.train.len(), image_parts.val.len()));
    }
    let (test_plan, _) = plan.subset(&image_parts.test);
    let test_images = images.subset(&image_parts.test);
    let (data, strata, parts) = plan.expand(&images, image_strata, &image_parts);

    let partial = partial_dir(&opts.out);
    let mut snapshots = checkpoint::ResumeFiles::new(&partial.join("checkpoint"));
    if opts.resume {
        if !snapshots.resume()? {
            tracing::warn!("nothing to resume in {}; training from the start", partial.display());
        }
    } else if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let rows = FitData {
        data: &data,
        features: &features,
        layout: &layout,
        strata: &strata,
        groups: plan.tiled.then_some(plan.image.as_slice()),
    };
    let fitted = fit_rows(cfg, extractor.as_ref(), &rows, &parts, &mut snapshots, progress)?;
    drop(extractor);
    let Fitted { vs, model, states, choices, outcome, .. } = &fitted;
    let in_dim = features.size()[1];

    let (evaluation, predictions_text) = match &cv {
        Some(cv) => (cv.pooled(c, model, &data)?, cv.predictions_csv(c, &data)?),
        None => {
            let test_features = fitted.rows(&features, &parts.test);
            let (mut evaluation, predictions, tiled) =
                score_images(c, model, &test_features, &test_images, &test_plan)?;
            evaluation.data = Some(test_plan.summary(c.data.intensity));
            let text = aggregate::predictions_table(
                c,
                &test_images,
                &vec!["test".to_string(); test_images.len()],
                &predictions,
                tiled.as_ref().map(|(a, _)| aggregate::TiledRows { aggregated: a, tiles: None }),
                &[],
            )?;
            (evaluation, text)
        }
    };
    let state = CheckpointState {
        furcate_version: crate::VERSION.to_string(),
        config: cfg.to_toml()?,
        config_dir: std::path::absolute(cfg.dir()).unwrap_or_else(|_| cfg.dir()),
        heads: c.heads.iter().map(|h| h.name().to_string()).zip(states.iter().cloned()).collect(),
        in_dim,
        weights_sha256: weights_sha256.clone(),
        split: image_parts.clone(),
        data_sha256: data_sha256(&data),
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.epochs_run,
        plugins: cfg.plugins.records(),
        choices: Some(choices.clone()),
    };
    checkpoint::save(&partial.join("checkpoint"), vs, &state)?;
    let _ = std::fs::remove_file(partial.join("checkpoint").join("resume.safetensors"));
    fsutil::write_atomic(&partial.join("config.toml"), state.config.as_bytes())?;
    let mut metrics =
        metrics_json(c, model, &evaluation, outcome, weights_sha256.as_deref(), &image_parts, Some(choices))?;
    metrics["data"] = serde_json::to_value(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
    metrics["warnings"] = json!(warnings);
    metrics["notes"] = json!(notes);
    if let Some(cv) = &cv {
        metrics["n_out_of_fold"] = json!(data.len());
        metrics["cross_validation"] =
            serde_json::to_value(&cv.summary).map_err(|e| Error::Invalid(e.to_string()))?;
        fsutil::write_atomic(&partial.join(folds::FOLDS_CSV), cv.summary.folds_csv()?.as_bytes())?;
    }
    fsutil::write_atomic(
        &partial.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Invalid(e.to_string()))?,
    )?;
    fsutil::write_atomic(
        &partial.join("history.csv"),
        history_csv(&model.head_names(), &outcome.history).as_bytes(),
    )?;
    fsutil::write_atomic(&partial.join("predictions.csv"), predictions_text.as_bytes())?;
    if opts.report {
        crate::report::write_report(&partial)?;
    }
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    }
    std::fs::rename(&partial, &opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let Fitted { outcome, choices, .. } = fitted;
    let cross_validation = cv.map(|cv| cv.summary);
    Ok(RunSummary {
        dir: opts.out.clone(),
        evaluation,
        outcome,
        cache,
        choices,
        warnings,
        notes,
        cross_validation,
        data: summary,
    })
}

fn data_sha256(data: &Dataset) -> Option<String> {
    data.source.is_file().then(|| fsutil::sha256_file(&data.source).ok()).flatten()
}

/// `metrics.json` of a run.
pub fn metrics_json(
    config: &RunConfig,
    model: &MultiHeadModel,
    eval: &Evaluation,
    outcome: &TrainOutcome,
    weights_sha256: Option<&str>,
    parts: &split::Split,
    choices: Option<&choose::Choices>,
) -> Result<Value> {
    let mut heads = serde_json::Map::new();
    for (i, (h, cfg)) in eval.heads.iter().zip(&config.heads).enumerate() {
        let mut head = json!({
            "type": h.kind,
            "column": cfg.column(),
            "error_rate": h.score.error_rate,
            "metrics": h.score.metrics,
        });
        if let Some(t) = eval.tiles.as_ref().and_then(|t| t.heads.get(i)) {
            head["tiles"] = json!({ "error_rate": t.score.error_rate, "metrics": t.score.metrics, "n": eval.tiles.as_ref().map(|t| t.n) });
        }
        heads.insert(h.name.clone(), head);
    }
    Ok(json!({
        "furcate_version": crate::VERSION,
        "extractor": serde_json::to_value(&config.extractor).map_err(|e| Error::Invalid(e.to_string()))?,
        "weights_sha256": weights_sha256,
        "best_epoch": outcome.best_epoch,
        "epochs_run": outcome.epochs_run,
        "stopped_early": outcome.stopped_early,
        "n_train": parts.train.len(),
        "n_val": parts.val.len(),
        "n_test": parts.test.len(),
        "cumulative_error": eval.cumulative_error,
        "exact_match_rate": eval.exact_match_rate,
        "exact_match_heads": eval.exact_match_heads,
        "loss_weighting": config.training.loss_weighting,
        "loss_weights": model
            .head_names()
            .into_iter()
            .zip(model.effective_weights())
            .map(|(name, w)| (name, json!(w)))
            .collect::<serde_json::Map<_, _>>(),
        "consistency": eval.consistency,
        "optimizer": config.training.optimizer,
        "standardise_features": config.training.standardise(),
        "choices": choices,
        "heads": heads,
    }))
}

/// `history.csv`: `epoch,train_total,val_total,train_<head>...,val_<head>...`.
pub fn history_csv(heads: &[String], history: &[EpochRecord]) -> String {
    let mut s = String::from("epoch,train_total,val_total");
    for h in heads {
        let _ = write!(s, ",train_{h}");
    }
    for h in heads {
        let _ = write!(s, ",val_{h}");
    }
    s.push('\n');
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.8}")).unwrap_or_default();
    for r in history {
        let _ = write!(s, "{},{:.8},{}", r.epoch, r.train_total, cell(r.val_total));
        for v in &r.train {
            let _ = write!(s, ",{v:.8}");
        }
        for i in 0..heads.len() {
            let _ = write!(s, ",{}", cell(r.val.as_ref().map(|v| v[i])));
        }
        s.push('\n');
    }
    s
}

/// `predictions.csv`: `file,split`, then per head the true label (when the
/// data has the column) and the prediction's cells (see
/// [`output::predictions_csv_with`]).
pub fn predictions_csv(
    config: &RunConfig,
    data: &Dataset,
    split_name: &str,
    predictions: &[Vec<Prediction>],
) -> Result<String> {
    aggregate::predictions_table(
        config,
        data,
        &vec![split_name.to_string(); data.len()],
        predictions,
        None,
        &[],
    )
}

/// A saved run, loaded for scoring or prediction.
pub struct SavedRun {
    /// Its folder.
    pub dir: PathBuf,
    /// The checkpoint state.
    pub state: CheckpointState,
    /// Its configuration.
    pub config: LoadedConfig,
    /// The model's variables.
    pub vs: nn::VarStore,
    /// The model.
    pub model: MultiHeadModel,
    /// The feature standardisation fitted at training.
    pub scaler: FeatureScaler,
}

impl std::fmt::Debug for SavedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedRun").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SavedRun {
    /// Loads the run folder `dir`.
    pub fn open(dir: &Path) -> Result<SavedRun> {
        let ckpt = dir.join("checkpoint");
        if !ckpt.join("state.json").exists() {
            return Err(Error::data(dir, "not a furcate run folder (no checkpoint/state.json)"));
        }
        let state = checkpoint::load_state(&ckpt)?;
        let state_file = ckpt.join("state.json");
        crate::plugin::verify_records(&state.plugins, &state_file)?;
        let config = LoadedConfig::from_str(&state.config, &state.config_dir.join("config.toml"))
            .map_err(|e| Error::data(&state_file, format!("its config: {e}")))?;
        crate::plugin::verify_loaded(&state.plugins, &config.plugins, &state_file)?;
        crate::runtime::apply_config_threads(&config.config.runtime);
        let states: Vec<HeadState> = state.heads.iter().map(|(_, s)| s.clone()).collect();
        // A fine-tuned run's tail is built from the extractor, then gets its
        // trained values from the checkpoint like every other variable.
        let extractor = if config.config.extractor.trainable_stages() > 0 {
            Some(config.config.extractor.build(&config.build_context())?)
        } else {
            None
        };
        let routes = match &state.choices {
            Some(c) => c.routes(config.config.trunk.is_some())?,
            None => Routes::default(),
        };
        let (mut vs, model, scaler) = build_model_routed(
            &config.config,
            extractor.as_deref(),
            &states,
            state.in_dim,
            routes,
            Device::Cpu,
        )?;
        drop(extractor);
        checkpoint::load_model(&ckpt, &mut vs)?;
        Ok(SavedRun { dir: dir.to_path_buf(), state, config, vs, model, scaler })
    }

    /// Features for `data` with the run's extractor (through the cache),
    /// refusing a weights file that differs from the one the run was trained
    /// on; standardised as at training. A tiled run tiles `data` the same way
    /// (see [`SavedRun::rows`]).
    pub fn features(&self, data: &Dataset, progress: &mut dyn Progress) -> Result<Tensor> {
        Ok(self.rows(data, progress)?.features)
    }

    /// [`SavedRun::features`] with the rows' plan (image and tile of each row).
    pub fn rows(&self, data: &Dataset, progress: &mut dyn Progress) -> Result<Features> {
        let extractor = self.config.config.extractor.build(&self.config.build_context())?;
        if extractor.weights_sha256() != self.state.weights_sha256 {
            return Err(Error::weights(
                self.dir.join("config.toml"),
                format!(
                    "the extractor's weights changed since training (trained with sha256 {}, found {})",
                    self.state.weights_sha256.as_deref().unwrap_or("none"),
                    extractor.weights_sha256().as_deref().unwrap_or("none")
                ),
            ));
        }
        let mut f = features_for(&self.config, extractor.as_ref(), data, progress)?;
        f.features = self.scaler.apply(&f.features);
        Ok(f)
    }

    /// Scores the run on its own test part, or on the labelled manifest `data`.
    pub fn evaluate(&self, data: Option<&Path>, progress: &mut dyn Progress) -> Result<Evaluation> {
        let c = &self.config.config;
        let set = match data {
            Some(m) => Dataset::from_manifest(m, &c.data.image_column)?,
            None => {
                let all = Dataset::load(&c.data, &self.config.dir())?;
                if self.state.data_sha256.is_some() && data_sha256(&all) != self.state.data_sha256 {
                    return Err(Error::data(
                        &all.source,
                        "the data changed since training, so its test split no longer exists; pass --data",
                    ));
                }
                if self.state.split.test.is_empty() {
                    return Err(Error::data(
                        self.dir.join("metrics.json"),
                        "the run has no test part (it was cross-validated and its model trained on every \
                         labelled image): its out-of-fold scores are in metrics.json (cross_validation) and \
                         folds.csv; pass --data to score other labelled images",
                    ));
                }
                all.subset(&self.state.split.test)
            }
        };
        check_columns(&self.config, &set)?;
        // Labels the run cannot score (a class it never saw, a non-number) are
        // errors naming the manifest line, as they are at training.
        encode(&self.model, c, &set, Device::Cpu)?;
        let rows = self.rows(&set, progress)?;
        let mut evaluation = score_images(c, &self.model, &rows.features, &set, &rows.plan)?.0;
        evaluation.data = Some(rows.summary);
        Ok(evaluation)
    }

    /// Predictions for unlabelled images, as CSV text (one row per image).
    pub fn predict(&self, paths: &[PathBuf], progress: &mut dyn Progress) -> Result<String> {
        Ok(self.predict_table(paths, &PredictOptions::default(), progress)?.csv)
    }

    /// Predictions for unlabelled images: one row per image (a tiled run
    /// aggregates its tiles, [`aggregate`]: value heads by the mean, class
    /// heads by the mean probability), every class's probability, and the
    /// CSV text (with [`PredictOptions::tiles`] each tile's row after its
    /// image's; with [`PredictOptions::probabilities`] the `<head>_p_<class>`
    /// columns).
    pub fn predict_table(
        &self,
        paths: &[PathBuf],
        opts: &PredictOptions,
        progress: &mut dyn Progress,
    ) -> Result<Predicted> {
        let mut set = Dataset::from_paths(paths)?;
        let c = &self.config.config;
        if let Some(px) = opts.pixel_size {
            set.columns.insert(c.data.pixel_size_column.clone(), vec![Some(px.to_string()); set.len()]);
        } else if let Some(target) = c.data.pixel_size {
            return Err(Error::Invalid(format!(
                "this run works at data.pixel_size = {target} micrometres per pixel; give the images' own \
                 pixel size (predict --pixel-size)"
            )));
        }
        let rows = self.rows(&set, progress)?;
        let (predictions, tiled) = predict_images(&self.model, &rows.features, &rows.plan);
        let table = match &tiled {
            None => output::PredictionTable::predict(&self.model, &rows.features),
            Some((_, r)) => {
                output::PredictionTable::per_image(&self.model, &predictions, r, &rows.plan.groups())
            }
        };
        let extra = if opts.probabilities { table.probability_columns() } else { Vec::new() };
        let tiled_rows = tiled.as_ref().map(|(a, r)| aggregate::TiledRows {
            aggregated: a,
            tiles: opts.tiles.then_some((&rows.plan, r.predictions.as_slice())),
        });
        let csv = aggregate::predictions_table(
            c,
            &set,
            &vec!["predict".to_string(); set.len()],
            &predictions,
            tiled_rows,
            &extra,
        )?;
        Ok(Predicted { images: set, table, csv })
    }
}

/// Extracts the features of the images `cfg` names (no training).
pub fn extract(
    cfg: &LoadedConfig,
    progress: &mut dyn Progress,
) -> Result<(Dataset, Tensor, HashMap<String, String>)> {
    let images = Dataset::load(&cfg.config.data, &cfg.dir())?;
    extract_from(cfg, &images, progress)
}

/// Extracts the features of the images of `images` with `cfg`'s extractor,
/// through the feature cache; returns the rows (one per image, or per tile
/// named `<image>#<tile>` for a tiled config) with their features and the
/// metadata of a features file.
pub fn extract_from(
    cfg: &LoadedConfig,
    images: &Dataset,
    progress: &mut dyn Progress,
) -> Result<(Dataset, Tensor, HashMap<String, String>)> {
    crate::runtime::apply_config_threads(&cfg.config.runtime);
    let extractor = cfg.config.extractor.build(&cfg.build_context())?;
    let Features { features, plan, .. } = features_for(cfg, extractor.as_ref(), images, progress)?;
    let mut data = images.subset(&plan.image);
    if plan.tiled {
        for (r, name) in data.names.iter_mut().enumerate() {
            name.push_str(&format!("#{}", plan.tile_label(r)));
        }
    }
    let mut meta = HashMap::new();
    meta.insert("extractor".into(), serde_json::to_string(&cfg.config.extractor).unwrap_or_default());
    if let Some(sha) = extractor.weights_sha256() {
        meta.insert("weights_sha256".into(), sha);
    }
    Ok((data, features.to_kind(Kind::Float), meta))
}

/// Plain text lines saying which taps each head reads and its weight decay
/// (with the number of candidates scored, when it was chosen).
pub fn format_choices(choices: &choose::Choices) -> String {
    let mut s = String::new();
    for h in &choices.heads {
        let reads = match &h.taps {
            Some(t) => t.join("+"),
            None => "trunk / all features".into(),
        };
        let how = if h.candidates.is_empty() {
            String::new()
        } else {
            format!(" (chosen from {} candidates)", h.candidates.len())
        };
        let _ = writeln!(s, "head {:<22} reads {:<24} weight decay {:e}{how}", h.head, reads, h.weight_decay);
    }
    if let Some(on) = &choices.scored_on {
        let _ = writeln!(s, "choices scored on the {on}");
    }
    s
}

/// What an exact match means for `eval`: which heads must all be right, and
/// which heads it leaves out (value heads without a `tolerance`).
pub fn exact_match_label(eval: &Evaluation) -> String {
    let covered = &eval.exact_match_heads;
    let left: Vec<&str> =
        eval.heads.iter().map(|h| h.name.as_str()).filter(|n| !covered.iter().any(|c| c == n)).collect();
    let mut s = format!("exact match ({} right", covered.join(" + "));
    if !left.is_empty() {
        let _ = write!(s, "; not counted, no tolerance: {}", left.join(", "));
    }
    s.push(')');
    s
}

/// A plain-text table of an evaluation, one line per head.
pub fn format_table(eval: &Evaluation) -> String {
    let mut s = format!("{:<24} {:<16} {:>12}  {}\n", "head", "type", "error rate", "other metrics");
    for h in &eval.heads {
        let err = h.score.error_rate.map(|e| format!("{:.4} %", e * 100.0)).unwrap_or_else(|| "-".into());
        let mut other: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in &h.score.metrics {
            if let Some(x) = v.as_f64() {
                if [
                    "mae",
                    "rmse",
                    "r2",
                    "max_error",
                    "macro_f1",
                    "accuracy",
                    "mean_abs_bin_error",
                    "coverage_90",
                ]
                .contains(&k.as_str())
                {
                    other.insert(k, format!("{k} {x:.4}"));
                }
            }
        }
        let _ = writeln!(
            s,
            "{:<24} {:<16} {:>12}  {}",
            h.name,
            h.kind,
            err,
            other.into_values().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(c) = eval.cumulative_error {
        let _ = writeln!(s, "cumulative error: {:.4} %", c * 100.0);
    }
    if let Some(x) = eval.exact_match_rate {
        let _ = writeln!(s, "{}: {:.4} %", exact_match_label(eval), x * 100.0);
    }
    for c in &eval.consistency {
        let rounded = c.rounded_error.map(|e| format!(", rounded value's error {:.4} %", e * 100.0));
        let _ = writeln!(
            s,
            "consistency {} -> {}: agreement {:.4} %{}",
            c.value,
            c.class,
            c.agreement * 100.0,
            rounded.unwrap_or_default()
        );
    }
    let _ = writeln!(s, "scored rows: {}", eval.n);
    if let Some(d) = &eval.data {
        let _ = writeln!(s, "{d}");
    }
    if let Some(t) = &eval.tiles {
        let _ = write!(s, "per tile (the scores above are per image):\n{}", format_table(t));
    }
    s
}
