//! The typed result of a run: what `metrics.json` holds, built once from the
//! evaluation ([`crate::run`]) and read back by the report and `furcate
//! experiment`. Below both in the data path: the report renders these types
//! and never reaches into the run.
//!
//! Every consumer goes through [`RunResults`], so a figure added to
//! [`HeadMetrics`] or here reaches `metrics.json`, the report and the
//! experiments' tables together, and a renamed one fails to compile.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::prepare::DataSummary;
use crate::metrics::HeadMetrics;
use crate::train::{LossWeighting, OptimizerKind};
use crate::{fsutil, Error, Result};

pub mod choices;
pub mod folds;

pub use choices::{Candidate, Choices, HeadChoice};
pub use folds::{CvSummary, FoldResult, MeanStd, FOLDS_CSV, OUT_OF_FOLD};

/// `metrics.json`: a run's scores and how it was made.
///
/// Fields an older furcate did not write read as their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunResults {
    /// The furcate that made the run.
    pub furcate_version: String,
    /// The extractor's resolved configuration (as in `config.toml`).
    pub extractor: serde_json::Value,
    /// SHA-256 of the extractor's weights file (`null`: random weights).
    pub weights_sha256: Option<String>,
    /// The epoch (L-BFGS iteration) whose weights were kept.
    pub best_epoch: usize,
    /// Epochs (iterations) run.
    pub epochs_run: usize,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
    /// Training rows.
    pub n_train: usize,
    /// Validation rows.
    pub n_val: usize,
    /// Test rows.
    pub n_test: usize,
    /// Sum of the discrete heads' error rates (the thesis's "cumulative error").
    pub cumulative_error: Option<f64>,
    /// Fraction of scored samples every head with a verdict got right.
    pub exact_match_rate: Option<f64>,
    /// The heads the exact-match rate covers.
    pub exact_match_heads: Vec<String>,
    /// How the heads' losses were weighted.
    pub loss_weighting: LossWeighting,
    /// Each head's weight in the objective at the end of training.
    pub loss_weights: BTreeMap<String, f64>,
    /// Agreement of value heads with the heads predicting their bins.
    pub consistency: Vec<Consistency>,
    /// The optimiser.
    pub optimizer: OptimizerKind,
    /// Whether the features were standardised.
    pub standardise_features: bool,
    /// The taps and weight decays chosen.
    pub choices: Option<Choices>,
    /// Per head, by name.
    pub heads: BTreeMap<String, HeadResult>,
    /// How the images were read.
    pub data: Option<DataSummary>,
    /// Warnings about the data and the split.
    pub warnings: Vec<String>,
    /// Notes on the settings.
    pub notes: Vec<String>,
    /// Cross-validated runs: the rows with an out-of-fold prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_out_of_fold: Option<usize>,
    /// Cross-validated runs: the folds' scores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<CvSummary>,
}

/// One head's entry of [`RunResults::heads`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadResult {
    /// The head's type (`classification`, `regression`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The data column it reads.
    pub column: String,
    /// Its error rate (discrete heads, value heads with a tolerance).
    pub error_rate: Option<f64>,
    /// Every figure.
    pub metrics: HeadMetrics,
    /// Tiled runs: the same scores per tile (the ones above are per image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TileResult>,
}

/// A head's scores per tile, in a tiled run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TileResult {
    /// Its error rate per tile.
    pub error_rate: Option<f64>,
    /// Every figure, per tile.
    pub metrics: HeadMetrics,
    /// Tiles scored.
    pub n: Option<usize>,
}

/// How a value head's predictions, rounded to the nearest class centre, agree
/// with a class head's (see [`crate::config::ConsistencyPair`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl RunResults {
    /// Reads `metrics.json` of the run folder `dir`; errors name the file.
    pub fn read(dir: &Path) -> Result<RunResults> {
        let path = dir.join("metrics.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&path, &text)
    }

    /// Parses the text of a `metrics.json` read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<RunResults> {
        // The shape first, for a plain message; then the typed read from the
        // text itself, whose errors carry line and column.
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(Error::data(path, "expected a JSON object at the top level")),
            Err(e) => return Err(Error::data(path, e.to_string())),
        }
        serde_json::from_str(text).map_err(|e| Error::data(path, e.to_string()))
    }

    /// Writes `metrics.json` into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        fsutil::write_atomic(&dir.join("metrics.json"), &bytes)
    }

    /// The `rounded_error` of the consistency pair whose value head is `head`.
    pub fn rounded_error(&self, head: &str) -> Option<f64> {
        self.consistency.iter().find(|c| c.value == head).and_then(|c| c.rounded_error)
    }
}
