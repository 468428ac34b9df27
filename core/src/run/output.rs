//! The run folder and what goes in it: the lock a run holds on its folder
//! ([`claim_run_folder`]), moving the finished folder into place
//! ([`publish_run_folder`]), and predictions as other tools read them:
//! `predictions.csv` (optionally with every class's probability, or with the
//! fold of an out-of-fold prediction) and the rows `furcate predict --json`
//! prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tch::Tensor;

use crate::config::RunConfig;
use crate::data::Dataset;
use crate::fsutil::{self, OutputLock};
use crate::head::Prediction;
use crate::model::MultiHeadModel;
use crate::{Error, Result};

pub use super::aggregate::ExtraColumn;

/// Takes the lock on the run folder `out` ([`OutputLock`]; with `wait`,
/// waiting for another run writing it to end), then, under the lock, checks
/// that `out` does not exist unless `force`: two runs on one folder never
/// share its partial folder, and the second never replaces the first's
/// finished folder without `force`. Hold the lock until the folder is published.
pub fn claim_run_folder(out: &Path, force: bool, wait: bool) -> Result<OutputLock> {
    let lock = OutputLock::acquire(out, wait)?;
    if out.symlink_metadata().is_ok() && !force {
        return Err(already_exists(out));
    }
    Ok(lock)
}

/// Renames the finished partial folder to `out`, replacing an existing `out`
/// only with `force` (checked again: something other than furcate may have
/// made it meanwhile), and syncs the parent folder.
pub fn publish_run_folder(partial: &Path, out: &Path, force: bool) -> Result<()> {
    if out.symlink_metadata().is_ok() && !force {
        return Err(already_exists(out));
    }
    fsutil::replace_dir(partial, out)
}

fn already_exists(out: &Path) -> Error {
    Error::io(
        out,
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists (use --force to replace it)"),
    )
}

/// Every head's predictions for a set of images, with each class's
/// probability where the head gives them.
#[derive(Debug, Clone)]
pub struct PredictionTable {
    /// Head names, in model order.
    pub heads: Vec<String>,
    /// Per head, one prediction per image.
    pub predictions: Vec<Vec<Prediction>>,
    /// Per head: its classes and, per image, one probability per class
    /// (`None`: a value head, or a head that does not tell them).
    pub probabilities: Vec<Option<ClassProbabilities>>,
}

/// A head's classes and, per image, one probability per class.
pub type ClassProbabilities = (Vec<String>, Vec<Vec<f64>>);

impl PredictionTable {
    /// Runs `model` on `features` (already standardised) in evaluation mode.
    ///
    /// # Shapes
    /// `features`: `[N, D]`.
    pub fn predict(model: &MultiHeadModel, features: &Tensor) -> Result<PredictionTable> {
        let rows = super::aggregate::predict_rows(model, features)?;
        let probabilities = model
            .heads()
            .iter()
            .zip(rows.probabilities)
            .map(|(h, p)| h.classes().zip(p).map(|(c, p)| (c.to_vec(), p)))
            .collect();
        Ok(PredictionTable { heads: model.head_names(), predictions: rows.predictions, probabilities })
    }

    /// The table of a tiled run: `predictions` per image (already
    /// aggregated), and each class head's probabilities averaged over the
    /// rows (tiles) of each image, `groups[i]` being image `i`'s rows.
    pub fn per_image(
        model: &MultiHeadModel,
        predictions: &[Vec<Prediction>],
        rows: &super::aggregate::RowOutputs,
        groups: &[Vec<usize>],
    ) -> PredictionTable {
        let probabilities = model
            .heads()
            .iter()
            .zip(&rows.probabilities)
            .map(|(h, probs)| {
                let (classes, probs) = (h.classes()?, probs.as_ref()?);
                let per_image = groups
                    .iter()
                    .map(|g| {
                        let tiles: Vec<Vec<f64>> = g.iter().map(|&r| probs[r].clone()).collect();
                        super::aggregate::mean_probabilities(&tiles)
                    })
                    .collect();
                Some((classes.to_vec(), per_image))
            })
            .collect();
        PredictionTable { heads: model.head_names(), predictions: predictions.to_vec(), probabilities }
    }

    /// The `<head>_p_<class>` columns of every head that gives probabilities.
    pub fn probability_columns(&self) -> Vec<ExtraColumn> {
        let mut out = Vec::new();
        for (head, probs) in self.heads.iter().zip(&self.probabilities) {
            let Some((classes, rows)) = probs else { continue };
            for (k, class) in classes.iter().enumerate() {
                out.push(ExtraColumn {
                    name: format!("{head}_p_{class}"),
                    cells: rows
                        .iter()
                        .map(|r| r.get(k).map(|p| format!("{p:.6}")).unwrap_or_default())
                        .collect(),
                });
            }
        }
        out
    }

    /// One row per image of `data`, for `--json`.
    pub fn rows(&self, data: &Dataset) -> Vec<PredictedImage> {
        (0..data.len())
            .map(|i| PredictedImage {
                file: data.names[i].clone(),
                heads: self
                    .heads
                    .iter()
                    .enumerate()
                    .map(|(h, name)| {
                        let probabilities = self.probabilities[h].as_ref().map(|(classes, rows)| {
                            classes.iter().cloned().zip(rows[i].iter().copied()).collect()
                        });
                        (
                            name.clone(),
                            HeadPrediction { prediction: self.predictions[h][i].clone(), probabilities },
                        )
                    })
                    .collect(),
            })
            .collect()
    }
}

/// One image's predictions (`furcate predict --json`).
#[derive(Debug, Clone, Serialize)]
pub struct PredictedImage {
    /// The image, as given.
    pub file: String,
    /// Per head name, its prediction.
    pub heads: BTreeMap<String, HeadPrediction>,
}

/// One head's prediction for one image.
#[derive(Debug, Clone, Serialize)]
pub struct HeadPrediction {
    /// `label` and `probability`, or `value` (and `std`).
    #[serde(flatten)]
    pub prediction: Prediction,
    /// Every class's probability, where the head gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
}

/// `predictions.csv`: `file,split`, then per head the true label (when the
/// data has the column) and the prediction's cells, then `extra` columns.
/// `split` holds one cell per row of `data`.
pub fn predictions_csv_with(
    config: &RunConfig,
    data: &Dataset,
    split: &[String],
    predictions: &[Vec<Prediction>],
    extra: &[ExtraColumn],
) -> Result<String> {
    super::aggregate::predictions_table(config, data, split, predictions, None, extra)
}

/// The CSV of `furcate extract --csv`: `file`, the data's label columns
/// (a manifest's columns besides the image column, in its order of names),
/// then `f0,f1,...`.
///
/// # Shapes
/// `features`: `[N, D]`, one row per image of `data`.
pub fn features_csv(data: &Dataset, features: &Tensor) -> Result<String> {
    let (n, d) = (features.size()[0], features.size()[1]);
    if n as usize != data.len() {
        return Err(Error::Invalid(format!("{n} feature rows for {} images", data.len())));
    }
    let values = Vec::<f32>::try_from(features.to_kind(tch::Kind::Float).reshape([-1]))
        .map_err(|e| Error::Torch(e.to_string()))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Invalid(e.to_string());
    let mut header = vec!["file".to_string()];
    header.extend(data.columns.keys().cloned());
    header.extend((0..d).map(|j| format!("f{j}")));
    w.write_record(&header).map_err(err)?;
    for (i, name) in data.names.iter().enumerate() {
        let mut row = vec![name.clone()];
        row.extend(data.columns.values().map(|c| c[i].clone().unwrap_or_default()));
        row.extend(values[i * d as usize..(i + 1) * d as usize].iter().map(|v| v.to_string()));
        w.write_record(&row).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
