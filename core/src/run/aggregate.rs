//! Tiled runs (`[data] tile`): the tiles' predictions made into one per image.
//!
//! - A **value head**'s image value is the mean of its tiles' values, with
//!   the population standard deviation over the tiles beside it
//!   (`<head>_tile_std` in `predictions.csv`); a head that predicts its own
//!   standard deviation gets the mean of its tiles'.
//! - A **class head**'s image prediction is the class of highest mean
//!   probability over the tiles (its probability is that mean), with the
//!   fraction of tiles whose own class it is beside it
//!   (`<head>_tile_agreement`). A head without [`PropertyHead::probabilities`]
//!   counts each tile's decoded class with its probability, other classes 0.
//!
//! **Views** (`[data] augment` with `tta`, [`crate::data::augment`]): a row
//! and its transformed views are averaged the same way into one row first
//! ([`average_views`]), before a tiled run's tiles are.

use tch::{Device, Tensor};

use crate::config::RunConfig;
use crate::data::prepare::RowPlan;
use crate::data::Dataset;
use crate::head::{Prediction, PropertyHead};
use crate::model::MultiHeadModel;
use crate::{Error, Result};

/// How an image's tiles disagree, for one head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// Population standard deviation of the tiles' values.
    TileStd(f64),
    /// Fraction of tiles whose own class is the image's.
    Agreement(f64),
}

impl Spread {
    /// `(column suffix, cell)` for `predictions.csv`.
    pub fn cell(&self) -> (&'static str, String) {
        match self {
            Spread::TileStd(s) => ("_tile_std", format!("{s:.6}")),
            Spread::Agreement(a) => ("_tile_agreement", format!("{a:.6}")),
        }
    }
}

/// The mean and population standard deviation of `values` (`(0, 0)` when empty).
///
/// ```
/// use furcate_core::run::aggregate::mean_std;
/// assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 1.0));
/// ```
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The element-wise mean of probability vectors (all of one length).
pub fn mean_probabilities(rows: &[Vec<f64>]) -> Vec<f64> {
    let k = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0; k];
    for r in rows {
        for (m, p) in mean.iter_mut().zip(r) {
            *m += p / rows.len() as f64;
        }
    }
    mean
}

/// Every head's predictions for every row, with the class probabilities of
/// the heads that give them.
#[derive(Debug, Clone)]
pub struct RowOutputs {
    /// Per head, per row.
    pub predictions: Vec<Vec<Prediction>>,
    /// Per head: per row, each class's probability (class heads that say).
    pub probabilities: Vec<Option<Vec<Vec<f64>>>>,
}

/// Predictions and probabilities of every head for `features`, in evaluation mode.
///
/// # Shapes
/// `features`: `[N, D]` -> `N` rows per head.
pub fn predict_rows(model: &MultiHeadModel, features: &Tensor) -> Result<RowOutputs> {
    tch::no_grad(|| {
        let outputs = model.forward_eval(features)?;
        let mut predictions = Vec::new();
        let mut probabilities = Vec::new();
        for (h, o) in model.heads().iter().zip(&outputs) {
            let o = o.f_to_device(Device::Cpu)?;
            predictions.push(h.decode(&o)?);
            probabilities.push(h.probabilities(&o)?.map(|p| crate::head::probability_rows(&p)));
        }
        Ok(RowOutputs { predictions, probabilities })
    })
}

/// `rows` reduced to one row per group of `views` (each a list of rows of
/// `rows`): a group of one keeps its row's own prediction; a larger group
/// gets the mean probability of a class head (its class the most probable)
/// and the mean value of a value head, as an image's tiles do.
pub fn average_views(heads: &[Box<dyn PropertyHead>], rows: &RowOutputs, views: &[Vec<usize>]) -> RowOutputs {
    let (predictions, probabilities) = heads
        .iter()
        .enumerate()
        .map(|(h, head)| {
            average_head(head.as_ref(), &rows.predictions[h], rows.probabilities[h].as_ref(), views)
        })
        .unzip();
    RowOutputs { predictions, probabilities }
}

/// One head's predictions for its outputs `output` (learned units, one row
/// per row), one per group of `views`, averaged as [`average_views`] does.
///
/// # Shapes
/// `output`: `[N, ...]` as the head's `forward` gives it.
pub fn average_outputs(
    head: &dyn PropertyHead,
    output: &Tensor,
    views: &[Vec<usize>],
) -> Result<Vec<Prediction>> {
    let output = output.f_to_device(Device::Cpu)?;
    let predictions = head.decode(&output)?;
    let probabilities = head.probabilities(&output)?.map(|p| crate::head::probability_rows(&p));
    Ok(average_head(head, &predictions, probabilities.as_ref(), views).0)
}

fn average_head(
    head: &dyn PropertyHead,
    predictions: &[Prediction],
    probabilities: Option<&Vec<Vec<f64>>>,
    views: &[Vec<usize>],
) -> (Vec<Prediction>, Option<Vec<Vec<f64>>>) {
    let preds = views
        .iter()
        .map(|g| match (g.as_slice(), head.classes()) {
            ([r], _) => predictions[*r].clone(),
            (_, Some(classes)) => {
                let probs: Vec<Vec<f64>> = match probabilities {
                    Some(p) => g.iter().map(|&r| p[r].clone()).collect(),
                    None => g.iter().map(|&r| one_hot(classes, &predictions[r])).collect(),
                };
                aggregate_class(classes, &probs, g.iter().map(|&r| &predictions[r])).0
            }
            (_, None) => aggregate_value(g.iter().map(|&r| &predictions[r])).0,
        })
        .collect();
    let probs = probabilities.map(|p| {
        views
            .iter()
            .map(|g| mean_probabilities(&g.iter().map(|&r| p[r].clone()).collect::<Vec<_>>()))
            .collect()
    });
    (preds, probs)
}

/// The rows scored among `rows` (indices into a set of rows whose plain
/// row is `base`, [`crate::data::prepare::RowPlan::base`]): per plain row,
/// in the order first seen, the plain row and the positions in `rows` of the
/// rows that make its prediction: all its views with `tta`, else itself.
pub fn view_groups(rows: &[usize], base: &[usize], tta: bool) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut keys: Vec<usize> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for (p, &r) in rows.iter().enumerate() {
        let b = base[r];
        if !tta && b != r {
            continue;
        }
        let k = *at.entry(b).or_insert_with(|| {
            keys.push(b);
            groups.push(Vec::new());
            keys.len() - 1
        });
        groups[k].push(p);
    }
    (keys, groups)
}

/// Per-image predictions of a tiled run (see the module).
#[derive(Debug, Clone)]
pub struct Aggregated {
    /// Per head, per image.
    pub predictions: Vec<Vec<Prediction>>,
    /// Per head, per image.
    pub spreads: Vec<Vec<Spread>>,
    /// Tiles per image.
    pub tiles: Vec<usize>,
}

/// The rows of each image (`groups`, from [`RowPlan::groups`]) aggregated per
/// image, head by head.
pub fn aggregate(heads: &[Box<dyn PropertyHead>], rows: &RowOutputs, groups: &[Vec<usize>]) -> Aggregated {
    let mut predictions = Vec::new();
    let mut spreads = Vec::new();
    for (h, head) in heads.iter().enumerate() {
        let preds = &rows.predictions[h];
        let (p, s): (Vec<Prediction>, Vec<Spread>) = groups
            .iter()
            .map(|g| match head.classes() {
                Some(classes) => {
                    let probs: Vec<Vec<f64>> = match &rows.probabilities[h] {
                        Some(p) => g.iter().map(|&r| p[r].clone()).collect(),
                        None => g.iter().map(|&r| one_hot(classes, &preds[r])).collect(),
                    };
                    aggregate_class(classes, &probs, g.iter().map(|&r| &preds[r]))
                }
                None => aggregate_value(g.iter().map(|&r| &preds[r])),
            })
            .unzip();
        predictions.push(p);
        spreads.push(s);
    }
    Aggregated { predictions, spreads, tiles: groups.iter().map(Vec::len).collect() }
}

/// One image's value from its tiles' predictions.
pub fn aggregate_value<'a>(tiles: impl Iterator<Item = &'a Prediction>) -> (Prediction, Spread) {
    let mut values = Vec::new();
    let mut stds = Vec::new();
    for p in tiles {
        if let Prediction::Value { value, std } = p {
            values.push(*value);
            stds.push(*std);
        }
    }
    let (mean, spread) = mean_std(&values);
    let std = stds.iter().copied().collect::<Option<Vec<f64>>>().map(|s| mean_std(&s).0);
    (Prediction::Value { value: mean, std }, Spread::TileStd(spread))
}

/// One image's class from its tiles' class probabilities `probs` and their
/// decoded predictions `tiles`.
pub fn aggregate_class<'a>(
    classes: &[String],
    probs: &[Vec<f64>],
    tiles: impl Iterator<Item = &'a Prediction>,
) -> (Prediction, Spread) {
    let mean = mean_probabilities(probs);
    let (k, p) =
        mean.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
    let label = classes.get(k).cloned().unwrap_or_default();
    let (mut n, mut agree) = (0usize, 0usize);
    for t in tiles {
        n += 1;
        agree += matches!(t, Prediction::Class { label: l, .. } if *l == label) as usize;
    }
    let agreement = if n == 0 { 0.0 } else { agree as f64 / n as f64 };
    (Prediction::Class { label, probability: p.max(0.0) }, Spread::Agreement(agreement))
}

fn one_hot(classes: &[String], p: &Prediction) -> Vec<f64> {
    let mut v = vec![0.0; classes.len()];
    if let Prediction::Class { label, probability } = p {
        if let Some(k) = classes.iter().position(|c| c == label) {
            v[k] = *probability;
        }
    }
    v
}

/// A column added after the prediction columns of `predictions.csv`.
#[derive(Debug, Clone)]
pub struct ExtraColumn {
    /// Its header.
    pub name: String,
    /// One cell per row.
    pub cells: Vec<String>,
}

/// A tiled run's per-image aggregates with the rows' own outputs.
pub type Tiled = (Aggregated, RowOutputs);

/// The tiled columns of a `predictions.csv`.
#[derive(Debug, Clone, Copy)]
pub struct TiledRows<'a> {
    /// The per-image aggregates.
    pub aggregated: &'a Aggregated,
    /// With the per-tile rows too: the rows' plan and predictions.
    pub tiles: Option<(&'a RowPlan, &'a [Vec<Prediction>])>,
}

/// `predictions.csv`: `file,split`, then per head the true label (when the
/// data has the column) and the prediction's cells. Tiled: a `tiles` column
/// (the image's tile count) and each head's spread; with per-tile rows also a
/// `tile` column (`all` for an image's row, `x<left>_y<top>` for a tile's).
pub fn predictions_table(
    config: &RunConfig,
    data: &Dataset,
    split: &[String],
    predictions: &[Vec<Prediction>],
    tiled: Option<TiledRows>,
    extra: &[ExtraColumn],
) -> Result<String> {
    let err = |e: csv::Error| Error::Invalid(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["file".to_string(), "split".to_string()];
    if let Some(t) = &tiled {
        header.push("tiles".into());
        if t.tiles.is_some() {
            header.push("tile".into());
        }
    }
    let labelled: Vec<bool> = config.heads.iter().map(|h| data.columns.contains_key(h.column())).collect();
    for (j, ((h, preds), has)) in config.heads.iter().zip(predictions).zip(&labelled).enumerate() {
        if *has {
            header.push(format!("{}_true", h.name()));
        }
        if let Some(p) = preds.first() {
            header.extend(p.cells().into_iter().map(|(suffix, _)| {
                if suffix.is_empty() {
                    format!("{}_pred", h.name())
                } else {
                    format!("{}{suffix}", h.name())
                }
            }));
        }
        if let Some(s) = tiled.as_ref().and_then(|t| t.aggregated.spreads[j].first()) {
            header.push(format!("{}{}", h.name(), s.cell().0));
        }
    }
    header.extend(extra.iter().map(|c| c.name.clone()));
    w.write_record(&header).map_err(err)?;
    let groups = tiled.as_ref().and_then(|t| t.tiles).map(|(plan, _)| plan.groups());
    for i in 0..data.len() {
        let row =
            |tile: Option<usize>| -> Vec<String> {
                let mut row = vec![data.names[i].clone(), split.get(i).cloned().unwrap_or_default()];
                if let Some(t) = &tiled {
                    row.push(if tile.is_none() { t.aggregated.tiles[i].to_string() } else { String::new() });
                    if let Some((plan, _)) = t.tiles {
                        row.push(tile.map(|r| plan.tile_label(r)).unwrap_or_else(|| "all".into()));
                    }
                }
                for (j, (h, has)) in config.heads.iter().zip(&labelled).enumerate() {
                    if *has {
                        row.push(data.columns[h.column()][i].clone().unwrap_or_default());
                    }
                    match (tile, tiled.as_ref().and_then(|t| t.tiles)) {
                        (Some(r), Some((_, rows))) => {
                            row.extend(rows[j][r].cells().into_iter().map(|(_, v)| v));
                            if tiled.is_some() {
                                row.push(String::new());
                            }
                        }
                        _ => {
                            row.extend(predictions[j][i].cells().into_iter().map(|(_, v)| v));
                            if let Some(t) = &tiled {
                                row.push(t.aggregated.spreads[j][i].cell().1);
                            }
                        }
                    }
                }
                // Extra columns belong to the image's row; a tile's row leaves them empty.
                row.extend(extra.iter().map(|c| {
                    if tile.is_none() { c.cells.get(i).cloned() } else { None }.unwrap_or_default()
                }));
                row
            };
        w.write_record(row(None)).map_err(err)?;
        for &r in groups.as_ref().map(|g| g[i].as_slice()).unwrap_or_default() {
            w.write_record(row(Some(r))).map_err(err)?;
        }
    }
    let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
