//! Which image to label next (`furcate suggest`): rank unlabelled images by
//! how much labelling them would help a trained run, and simulate that
//! choice on a fully labelled set ([`simulate`]).
//!
//! A [`Strategy`] ranks the *pool* (the unlabelled images) with two signals:
//!
//! - **uncertainty** ([`uncertainty`]): per head, how unsure the run's
//!   model is (class heads: margin or entropy of their probabilities; value
//!   heads: a predicted or tile spread over the labels' spread, left out when
//!   the run gives none), the mean over the heads;
//! - **diversity** ([`diversity`]): distance in the heads' standardised
//!   feature space (the columns the heads read) to the images already
//!   labelled and to the suggestions made so far (greedy k-centre), so that
//!   `K` suggestions are not `K` near-copies.
//!
//! | strategy | picks |
//! | --- | --- |
//! | `diverse` | largest uncertainty (margin) x distance to the nearest labelled or picked image (the default) |
//! | `margin` | largest margin uncertainty `1 - (p1 - p2)` |
//! | `entropy` | largest entropy of the class probabilities |
//! | `kcentre` | largest distance alone (covers the feature space; needs no uncertainty) |
//! | `badge` | k-means++ draws on the class heads' gradient embeddings `(p - e_ŷ) ⊗ x` (unsure and unlike each other; [`diversity::gradient_seeding`]) |
//! | `random` | a random choice (seeded), the reference |
//!
//! [`suggest`] does it for a run folder and writes nothing; the command line
//! writes [`Suggestions::csv`] (a table ready to fill in) and the contact
//! sheet ([`sheet`]).

pub mod diversity;
pub mod pool;
pub mod sheet;
pub mod simulate;
pub mod uncertainty;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::data::Dataset;
use crate::head::{HeadState, Prediction};
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::run::aggregate::Spread;
use crate::run::output::PredictionTable;
use crate::run::SavedRun;
use crate::{Error, Result};
use uncertainty::{combine, HeadSignal, Measure, Signal};

/// How [`rank`] chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Margin uncertainty times the distance to the nearest labelled or
    /// picked image (greedy k-centre weighted by uncertainty).
    Diverse,
    /// The largest margin uncertainty.
    Margin,
    /// The largest entropy.
    Entropy,
    /// The largest distance to the nearest labelled or picked image.
    #[serde(rename = "kcentre")]
    KCentre,
    /// k-means++ seeding on the class heads' gradient embeddings (BADGE).
    Badge,
    /// A seeded random choice.
    Random,
}

impl Strategy {
    /// Every strategy's name, as the command line and configs spell it.
    pub const NAMES: [&'static str; 6] = ["diverse", "margin", "entropy", "kcentre", "badge", "random"];

    /// The name, as in [`Strategy::NAMES`].
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Diverse => "diverse",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::KCentre => "kcentre",
            Strategy::Badge => "badge",
            Strategy::Random => "random",
        }
    }

    /// The uncertainty it ranks by (and that a suggestion reports).
    pub fn measure(self) -> Measure {
        match self {
            Strategy::Entropy => Measure::Entropy,
            _ => Measure::Margin,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Strategy> {
        let all = [
            Strategy::Diverse,
            Strategy::Margin,
            Strategy::Entropy,
            Strategy::KCentre,
            Strategy::Badge,
            Strategy::Random,
        ];
        all.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            Error::Invalid(format!("unknown strategy `{s}`; strategies are: {}", Strategy::NAMES.join(", ")))
        })
    }
}

/// What [`rank`] knows of the candidates.
#[derive(Debug)]
pub struct Candidates<'a> {
    /// `[N, D]` features of the candidates in which distance means "looks
    /// alike": the standardised columns the heads read.
    pub features: &'a Tensor,
    /// `[M, D]` the same features of the images already labelled (covered).
    pub labelled: Option<&'a Tensor>,
    /// Each head's uncertainty signal (heads without one are left out).
    pub heads: &'a [HeadSignal],
}

/// One suggestion of [`rank`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The candidate's row.
    pub index: usize,
    /// Its uncertainty (the mean over heads, the strategy's measure), when a head gives one.
    pub uncertainty: Option<f64>,
    /// Its distance to the nearest labelled or earlier suggested image, in
    /// units of the pool's median distance to the labelled images (strategies
    /// that measure it).
    pub distance: Option<f64>,
    /// Why it was chosen, in words.
    pub reason: String,
}

/// Ranks the candidates by `strategy` and returns the first `k` (all when
/// there are fewer), best first. `seed` drives [`Strategy::Random`].
///
/// Errors when `margin` or `entropy` is asked for and no head gives an
/// uncertainty; `diverse` and `badge` then fall back to `kcentre` (their
/// reasons say so).
pub fn rank(
    strategy: Strategy,
    c: &Candidates,
    k: usize,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<Vec<Ranked>> {
    let n = c.features.size().first().copied().unwrap_or(0) as usize;
    let measure = strategy.measure();
    let combined = combine(c.heads, measure, n);
    let u = combined.as_ref().map(|c| c.mean.as_slice());
    let k = k.min(n);
    let unsure = |i: usize| -> String {
        // The head that is least sure about image i says why.
        let Some(combined) = &combined else { return String::new() };
        let most = combined
            .per_head
            .iter()
            .enumerate()
            .filter_map(|(h, v)| v.as_ref().map(|v| (h, v[i])))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        most.and_then(|(h, _)| c.heads[h].describe(i)).unwrap_or_default()
    };
    let residual = if strategy == Strategy::Badge { uncertainty::residuals(c.heads, n) } else { None };
    let picks: Vec<Ranked> = match (strategy, u) {
        (Strategy::Badge, _) if residual.is_some() => {
            let (r, width) = residual.unwrap_or_default();
            let r = Tensor::f_from_slice(&r)?.f_view([n as i64, width as i64])?;
            diversity::gradient_seeding(c.features, &r, k, seed)?
                .into_iter()
                .map(|p| Ranked {
                    index: p.index,
                    uncertainty: u.map(|u| u[p.index]),
                    distance: None,
                    reason: format!(
                        "drawn by its gradient embedding's distance to the earlier picks (seed {seed}): {}",
                        unsure(p.index)
                    ),
                })
                .collect()
        }
        (Strategy::Random, _) => {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            order
                .into_iter()
                .take(k)
                .map(|i| Ranked {
                    index: i,
                    uncertainty: u.map(|u| u[i]),
                    distance: None,
                    reason: format!("random choice (seed {seed})"),
                })
                .collect()
        }
        (Strategy::Margin | Strategy::Entropy, None) => {
            return Err(Error::Invalid(format!(
                "strategy `{strategy}` ranks by the heads' uncertainty, and no head gives one (class heads \
                 give probabilities; a value head needs a predicted std or tiles): use `kcentre` or `random`"
            )))
        }
        (Strategy::Margin | Strategy::Entropy, Some(u)) => {
            let mut order: Vec<usize> = (0..n).collect();
            // Most uncertain first; ties keep the pool's order.
            order.sort_by(|&a, &b| u[b].total_cmp(&u[a]));
            order
                .into_iter()
                .take(k)
                .map(|i| Ranked {
                    index: i,
                    uncertainty: Some(u[i]),
                    distance: None,
                    reason: format!("{} {:.3}: {}", measure_name(measure), u[i], unsure(i)),
                })
                .collect()
        }
        (Strategy::Diverse | Strategy::KCentre | Strategy::Badge, _) => {
            let weights = if strategy == Strategy::Diverse { u } else { None };
            let kc = diversity::k_centre(c.features, c.labelled, weights, k, progress)?;
            let scale = kc.scale;
            kc.picks
                .into_iter()
                .map(|p| {
                    let distance = (p.distance.is_finite() && scale > 0.0).then(|| p.distance / scale);
                    let far = match distance {
                        Some(d) => format!("{d:.2} x the median distance to the labelled images"),
                        None => "the first pick (nothing labelled to be near)".to_string(),
                    };
                    let reason = match (strategy, weights) {
                        (Strategy::Diverse, Some(u)) => format!(
                            "{} {:.3} x distance: {}; {far}",
                            measure_name(measure),
                            u[p.index],
                            unsure(p.index)
                        ),
                        (Strategy::Diverse, None) => {
                            format!("no head gives an uncertainty, so by distance alone (kcentre): {far}")
                        }
                        (Strategy::Badge, _) => {
                            format!(
                                "no class head gives probabilities, so by distance alone (kcentre): {far}"
                            )
                        }
                        _ => format!("far from what is labelled or picked: {far}"),
                    };
                    Ranked { index: p.index, uncertainty: u.map(|u| u[p.index]), distance, reason }
                })
                .collect()
        }
    };
    Ok(picks)
}

fn measure_name(m: Measure) -> &'static str {
    match m {
        Measure::Margin => "margin uncertainty",
        Measure::Entropy => "entropy",
    }
}

/// Each head's signal from a model's predictions of the candidates:
/// class heads' probabilities (or `1 - p` of the decoded class when the
/// head tells only that); a value head's predicted std or, in a tiled run,
/// its tiles' spread (`spreads`), over its training labels' std (`states`'
/// `std`, else the spread of its predictions); other value heads get no
/// signal, with a note saying so. `keep`: the heads (model order) that
/// count; the others get no signal and no note.
pub fn signals(
    model: &MultiHeadModel,
    states: &[HeadState],
    table: &PredictionTable,
    spreads: Option<&[Vec<Spread>]>,
    keep: &[usize],
) -> (Vec<HeadSignal>, Vec<String>) {
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for (h, head) in model.heads().iter().enumerate() {
        let name = table.heads[h].clone();
        if !keep.contains(&h) {
            out.push(HeadSignal { name, signal: None });
            continue;
        }
        let preds = &table.predictions[h];
        let signal = if let Some((classes, rows)) = &table.probabilities[h] {
            Some(Signal::Probabilities { classes: classes.clone(), rows: rows.clone() })
        } else if head.classes().is_some() {
            let values = preds
                .iter()
                .map(|p| match p {
                    Prediction::Class { probability, .. } => 1.0 - probability,
                    Prediction::Value { .. } => 0.0,
                })
                .collect();
            Some(Signal::Scaled { values, what: "1 - probability".into() })
        } else {
            let stds: Option<Vec<f64>> = preds
                .iter()
                .map(|p| match p {
                    Prediction::Value { std: Some(s), .. } => Some(*s),
                    _ => None,
                })
                .collect();
            let tiles: Option<Vec<f64>> = spreads.and_then(|s| {
                s.get(h)?
                    .iter()
                    .map(|s| match s {
                        Spread::TileStd(v) => Some(*v),
                        Spread::Agreement(_) => None,
                    })
                    .collect()
            });
            let (values, what) = match (stds, tiles) {
                (Some(v), _) => (v, "predicted std / label std"),
                (None, Some(v)) => (v, "tile std / label std"),
                (None, None) => {
                    notes.push(format!(
                        "head `{name}` is a value head without a spread (no predicted std, no tiles): \
                         left out of the uncertainty"
                    ));
                    out.push(HeadSignal { name, signal: None });
                    continue;
                }
            };
            let scale = states
                .get(h)
                .and_then(|s| s.get("std"))
                .and_then(serde_json::Value::as_f64)
                .filter(|s| *s > 0.0)
                .unwrap_or_else(|| value_spread(preds));
            let values =
                values.iter().map(|v| if scale > 0.0 { (v / scale).clamp(0.0, 1.0) } else { 0.0 }).collect();
            Some(Signal::Scaled { values, what: what.into() })
        };
        out.push(HeadSignal { name, signal });
    }
    (out, notes)
}

/// The population standard deviation of value predictions (0 when none).
fn value_spread(preds: &[Prediction]) -> f64 {
    let v: Vec<f64> = preds
        .iter()
        .filter_map(|p| match p {
            Prediction::Value { value, .. } => Some(*value),
            Prediction::Class { .. } => None,
        })
        .collect();
    crate::run::aggregate::mean_std(&v).1
}

/// The model order of the heads named `names` (every head when empty);
/// errors on a name that is not a head of the model.
pub fn head_indices(model: &MultiHeadModel, names: &[String]) -> Result<Vec<usize>> {
    let all = model.head_names();
    if names.is_empty() {
        return Ok((0..all.len()).collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter().position(|a| a == n).ok_or_else(|| {
                Error::Invalid(format!("no head `{n}` in the run; its heads are: {}", all.join(", ")))
            })
        })
        .collect()
}

/// The feature columns the heads `heads` (model order) read, merged and in
/// column order; `None`: every column (a head reads all of them, directly or
/// through a trunk that does).
pub fn head_columns(model: &MultiHeadModel, heads: &[usize]) -> Option<Vec<(i64, i64)>> {
    let routes = model.routes();
    let dim = model.in_dim();
    let mut used = vec![false; dim as usize];
    for &h in heads {
        let ranges = match routes.heads.get(h).and_then(|r| r.as_ref()) {
            Some(r) => r,
            None => match (&routes.trunk, model.trunk()) {
                (Some(t), Some(_)) => t,
                _ => return None,
            },
        };
        for &(s, l) in ranges {
            for u in used.iter_mut().skip(s as usize).take(l as usize) {
                *u = true;
            }
        }
    }
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &u) in used.iter().chain(std::iter::once(&false)).enumerate() {
        match (u, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s as i64, (i - s) as i64));
                start = None;
            }
            _ => {}
        }
    }
    Some(runs)
}

/// The columns `columns` of `features` (all when `None`).
pub fn select(features: &Tensor, columns: Option<&[(i64, i64)]>) -> Tensor {
    match columns {
        Some(c) => crate::extractor::taps::select_columns(features, c),
        None => features.shallow_clone(),
    }
}

/// Options of [`suggest`].
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// How many images to suggest.
    pub k: usize,
    /// How to rank them.
    pub strategy: Strategy,
    /// Seed of [`Strategy::Random`].
    pub seed: u64,
    /// The heads whose uncertainty counts and whose features measure
    /// distance (empty: every head).
    pub heads: Vec<String>,
    /// The images' micrometres per pixel, for a run with `data.pixel_size`.
    pub pixel_size: Option<f64>,
}

/// One suggested image.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// 1 for the first.
    pub rank: usize,
    /// The image file.
    pub file: PathBuf,
    /// Per head (model order), the predicted label or value and its
    /// probability (class heads) or std (value heads with one).
    pub predictions: Vec<Prediction>,
    /// Its uncertainty (mean over heads), when a head gives one.
    pub uncertainty: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// What [`suggest`] returns.
#[derive(Debug, Clone)]
pub struct Suggestions {
    /// The suggestions, best first.
    pub items: Vec<Suggestion>,
    /// Images in the pool (after leaving out those the run trained on).
    pub pool: usize,
    /// Things the user should know (heads left out, images skipped).
    pub notes: Vec<String>,
    /// The table to fill in ([`Suggestions::csv`] renders it).
    pub image_column: String,
    /// Per head (model order): its name and label column.
    pub heads: Vec<(String, String)>,
}

impl Suggestions {
    /// The CSV ready to fill in: the image column, one empty column per head
    /// named as the head's label column (fill them in and the first columns
    /// append to the manifest), then per head the prediction
    /// (`<head>_predicted`) and its probability or std
    /// (`<head>_probability` / `<head>_std`), then `rank`, `uncertainty` and
    /// `reason`.
    pub fn csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| Error::Invalid(e.to_string());
        let mut header = vec![self.image_column.clone()];
        header.extend(self.heads.iter().map(|(_, column)| column.clone()));
        for (i, (name, _)) in self.heads.iter().enumerate() {
            header.push(format!("{name}_predicted"));
            let second = match self.items.first().map(|s| &s.predictions[i]) {
                Some(Prediction::Value { std: Some(_), .. }) => Some("std"),
                Some(Prediction::Value { std: None, .. }) => None,
                _ => Some("probability"),
            };
            if let Some(s) = second {
                header.push(format!("{name}_{s}"));
            }
        }
        header.extend(["rank", "uncertainty", "reason"].map(String::from));
        w.write_record(&header).map_err(err)?;
        for s in &self.items {
            let mut row = vec![s.file.display().to_string()];
            row.extend(self.heads.iter().map(|_| String::new()));
            for p in &s.predictions {
                row.extend(p.cells().into_iter().map(|(_, cell)| cell));
            }
            row.push(s.rank.to_string());
            row.push(s.uncertainty.map(|u| format!("{u:.4}")).unwrap_or_default());
            row.push(s.reason.clone());
            w.write_record(&row).map_err(err)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The labelled images the run trained on (its training and validation
/// parts, less the images without any label that `semi_supervised` used),
/// when its data can still be read as it was; else a note why not.
fn labelled_images(saved: &SavedRun) -> std::result::Result<Dataset, String> {
    let c = &saved.config.config;
    let all = Dataset::load(&c.data, &saved.config.dir()).map_err(|e| e.to_string())?;
    if saved.state.data_sha256.is_some() && crate::run::write::data_sha256(&all) != saved.state.data_sha256 {
        return Err(format!("{} changed since training", all.source.display()));
    }
    let columns: Vec<&str> = c.heads.iter().map(|h| h.column()).collect();
    let unlabelled = all.unlabelled_rows(&columns);
    let split = &saved.state.split;
    let mut rows: Vec<usize> = split.train.iter().chain(&split.val).copied().collect();
    rows.sort_unstable();
    rows.retain(|&r| r < all.len() && unlabelled.binary_search(&r).is_err());
    Ok(all.subset(&rows))
}

/// Per image of `plan`, the mean of its rows (tiles) of `features`; the rows themselves when untiled.
fn per_image(features: &Tensor, plan: &crate::data::prepare::RowPlan) -> Tensor {
    if !plan.tiled {
        return features.shallow_clone();
    }
    let rows: Vec<Tensor> = plan
        .groups()
        .iter()
        .map(|g| crate::run::assemble::select_rows(features, g).mean_dim(0, false, Kind::Float))
        .collect();
    Tensor::stack(&rows, 0)
}

/// Ranks the unlabelled images `pool` (files, folders, globs: [`pool::expand`])
/// for the run `saved` and returns the first `opts.k`. Features come through
/// the feature cache as `furcate predict`'s do. The run's own training images
/// are the labelled centres of the diversity term (when its data can still
/// be read) and are left out of the pool.
pub fn suggest(
    saved: &SavedRun,
    pool: &[PathBuf],
    opts: &SuggestOptions,
    progress: &mut dyn Progress,
) -> Result<Suggestions> {
    if opts.k == 0 {
        return Err(Error::Invalid("-n must be at least 1".into()));
    }
    let c = &saved.config.config;
    let keep = head_indices(&saved.model, &opts.heads)?;
    let mut notes = Vec::new();
    let mut files = pool::expand(pool)?;
    let labelled = match labelled_images(saved) {
        Ok(set) => Some(set),
        Err(why) => {
            notes.push(format!(
                "the run's training images cannot be read back ({why}): distances are to the other \
                 suggestions only"
            ));
            None
        }
    };
    if let Some(set) = &labelled {
        let known: std::collections::HashSet<PathBuf> =
            set.files.iter().map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())).collect();
        let before = files.len();
        files.retain(|f| !known.contains(&std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
        if files.len() < before {
            notes.push(format!("{} pool image(s) the run trained on are left out", before - files.len()));
        }
        if files.is_empty() {
            return Err(Error::Invalid(
                "every pool image is one the run trained on: nothing to suggest".into(),
            ));
        }
    }
    let set = saved.unlabelled(&files, opts.pixel_size)?;
    let rows = saved.rows(&set, progress)?;
    let predicted = crate::run::predict_images(&saved.model, &rows.features, &rows.plan)?;
    let table = PredictionTable::per_image(
        &saved.model,
        &predicted.predictions,
        &predicted.rows,
        &predicted.plan.groups(),
    );
    let spreads = predicted.aggregated.as_ref().map(|a| a.spreads.as_slice());
    let states: Vec<HeadState> = saved.state.heads.iter().map(|(_, s)| s.clone()).collect();
    let (heads, head_notes) = signals(&saved.model, &states, &table, spreads, &keep);
    notes.extend(head_notes);
    let columns = head_columns(&saved.model, &keep);
    let space = select(&per_image(&rows.features, &rows.plan), columns.as_deref());
    let labelled_space = match &labelled {
        Some(l) if !l.is_empty() => {
            let r = saved.rows(l, progress)?;
            Some(select(&per_image(&r.features, &r.plan), columns.as_deref()))
        }
        _ => None,
    };
    let candidates = Candidates { features: &space, labelled: labelled_space.as_ref(), heads: &heads };
    let ranked = rank(opts.strategy, &candidates, opts.k, opts.seed, progress)?;
    let items = ranked
        .into_iter()
        .enumerate()
        .map(|(r, p)| Suggestion {
            rank: r + 1,
            file: set.files[p.index].clone(),
            predictions: predicted.predictions.iter().map(|h| h[p.index].clone()).collect(),
            uncertainty: p.uncertainty,
            reason: p.reason,
        })
        .collect();
    Ok(Suggestions {
        items,
        pool: set.len(),
        notes,
        image_column: c.data.image_column.clone(),
        heads: c.heads.iter().map(|h| (h.name().to_string(), h.column().to_string())).collect(),
    })
}
