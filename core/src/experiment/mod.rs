//! Sweeps: one base run configuration, lists of values to vary, one run folder
//! per point, and a summary in the thesis's form (`results.csv`,
//! `results.md`, one plot of error against training fraction per head).
//!
//! ```toml
//! base = "../default.toml"      # a run config, relative to this file
//! out = "../../runs/table1"     # relative to this file
//!
//! [overrides]                   # merged into the base config
//! training = { epochs = 1024, patience = 200 }
//!
//! [sweep]
//! test_fractions = [0.1, 0.5, 0.9, 0.95]
//! seeds = [0, 1, 2]
//! trunks = [[], [100]]          # [] = no shared layer
//! head_sets = [["morphology"]]  # names of the base config's heads
//! # extractors = [{ type = "resnet50", size = 128 }]
//! # taps = [["stem"], ["stage1"], ["stem", "stage1"]]  # each kept head's `taps`
//! ```
//!
//! A value head's prediction rounded to its class head's bins (the run's
//! `[[consistency]]` pairs, see [`crate::config::ConsistencyPair`]) is scored
//! beside the heads' own errors; a pair whose heads a point leaves out is
//! dropped from that point.
//!
//! **Taps.** Each value of `sweep.taps` is a list of the extractor's tap names
//! (see [`crate::extractor::taps`]); at that point every kept head reads
//! those taps (`taps = [...]` replaces any the head's table had). The taps'
//! names joined by `+` label the point (`..._taps-stem+stage1_...`) and its
//! group. A sweep over taps also writes the *bifurcation map*: per head,
//! `bifurcation_<head>.png` (its error, or MAE for a value head, against the
//! taps it reads, one line per test fraction) and a `## Bifurcation map`
//! section of `results.md`. Without `sweep.taps` points are labelled `base`
//! and named as before.
//!
//! **Folds.** `sweep.folds = [0, 5]` runs each point as one split (`0`) and
//! as 5-fold cross-validation ([`crate::run::folds`]); points are named
//! `..._folds5_...` and grouped by their folds, and a cross-validated
//! group's tables give the mean ± std over the folds of every seed (its
//! heads' scores in `results.csv` are the pooled out-of-fold ones).
//!
//! Every point trains through [`crate::run::train_run`]; features come from
//! the feature cache, so each extractor extracts once for the whole sweep.
//! A point whose run folder exists is read back instead of retrained (the
//! sweep resumes) unless `force` is set.

//!
//! The module's files follow the sweep: `points.rs` (the experiment file
//! made into one run configuration per point), `run.rs` (training or
//! reading back each point), `tables.rs` (`results.csv`, `results.md`, the
//! error plots), `bifurcation.rs` (the maps of a sweep over taps) and
//! `measure.rs` (what the tables report per head).

mod bifurcation;
mod measure;
mod points;
mod run;
mod tables;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

use crate::features::CacheStats;

pub use crate::metrics::mean_std;
pub use measure::format_mae;
pub use tables::{results_csv, results_markdown};

/// An experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The base run configuration, relative to the experiment file.
    pub base: PathBuf,
    /// The output folder, relative to the experiment file (default:
    /// `runs/<experiment name>` in the current folder).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Tables merged into the base configuration before sweeping.
    #[serde(default)]
    pub overrides: toml::Table,
    /// The values to vary.
    #[serde(default)]
    pub sweep: Sweep,
}

/// `[sweep]`: every combination of these lists is one point; an absent or
/// empty list keeps the base configuration's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// `training.test_fraction` values.
    #[serde(default)]
    pub test_fractions: Vec<f64>,
    /// `training.seed` values (the repetitions).
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// `trunk.hidden` values; `[]` removes the trunk (independent heads).
    #[serde(default)]
    pub trunks: Vec<Vec<i64>>,
    /// Sets of head names, each a subset of the base configuration's heads.
    #[serde(default)]
    pub head_sets: Vec<Vec<String>>,
    /// `[extractor]` tables, each replacing the base one.
    #[serde(default)]
    pub extractors: Vec<toml::Table>,
    /// Lists of tap names: at each, every kept head reads these taps.
    #[serde(default)]
    pub taps: Vec<Vec<String>>,
    /// `training.folds` values: K-fold cross-validation at each (`0`: one
    /// train / test split). The tables then give the mean ± std over the
    /// folds (of every seed).
    #[serde(default)]
    pub folds: Vec<usize>,
}

/// [`Point::taps`] of a sweep without `taps`: the heads read what the base config says.
pub const BASE_TAPS: &str = "base";

/// One point of a sweep.
#[derive(Debug, Clone)]
pub struct Point {
    /// The run folder's name.
    pub name: String,
    /// Extractor label (its `type`, numbered when types repeat).
    pub extractor: String,
    /// Head names joined by `+`.
    pub heads: String,
    /// `none` or the hidden sizes joined by `x`.
    pub trunk: String,
    /// The tap names every head reads, joined by `+`; [`BASE_TAPS`] when the
    /// sweep has no `taps`.
    pub taps: String,
    /// Test fraction.
    pub test_fraction: f64,
    /// Seed.
    pub seed: u64,
    /// Folds of its cross-validation (0: none).
    pub folds: usize,
    /// The point's run configuration as TOML.
    pub config: String,
}

impl Point {
    /// The group a point's seeds are averaged in: extractor, heads, trunk,
    /// and the taps when the sweep has them.
    pub fn group(&self) -> String {
        let mut g =
            if self.has_taps() { format!("{} | taps {}", self.context(), self.taps) } else { self.context() };
        if self.folds > 0 {
            let _ = write!(g, " | {} folds", self.folds);
        }
        g
    }

    /// The group without its taps: extractor, heads, trunk (the points of a
    /// bifurcation map's line).
    pub fn context(&self) -> String {
        format!("{} | {} | trunk {}", self.extractor, self.heads, self.trunk)
    }

    /// Whether the point comes from a sweep over `taps`.
    pub fn has_taps(&self) -> bool {
        self.taps != BASE_TAPS
    }
}

/// A parsed experiment with its points.
#[derive(Debug)]
pub struct Experiment {
    /// The experiment file.
    pub path: PathBuf,
    /// Its contents.
    pub config: ExperimentConfig,
    /// The base configuration's path (anchors the points' relative paths).
    pub base_path: PathBuf,
    /// Every point, in sweep order.
    pub points: Vec<Point>,
}

/// Options of [`Experiment::run`].
#[derive(Debug, Clone, Default)]
pub struct ExperimentOptions {
    /// The output folder (default: the experiment's `out`).
    pub out: Option<PathBuf>,
    /// Retrain points whose run folder exists.
    pub force: bool,
    /// Write each run's plots and `report.html` (slow; off by default).
    pub report: bool,
    /// When another process is writing the output folder, wait for it
    /// instead of failing ([`crate::fsutil::OutputLock`]).
    pub wait: bool,
}

/// One head's result at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadResult {
    /// Head name.
    pub name: String,
    /// Head type.
    pub kind: String,
    /// Error rate on the test part (discrete heads).
    pub error_rate: Option<f64>,
    /// Mean absolute error (regression heads).
    pub mae: Option<f64>,
    /// Error rate of the prediction rounded to the nearest class of its
    /// `[[consistency]]` class head.
    pub rounded_error: Option<f64>,
    /// Fraction of test samples inside the predicted 90 % interval (heads
    /// that predict their uncertainty).
    pub coverage_90: Option<f64>,
}

/// The result of one point.
#[derive(Debug, Clone)]
pub struct PointResult {
    /// The point.
    pub point: Point,
    /// Per head, in the run's order.
    pub heads: Vec<HeadResult>,
    /// Epoch of the best validation loss.
    pub best_epoch: usize,
    /// Epochs trained.
    pub epochs_run: usize,
    /// Sum of the discrete heads' error rates.
    pub cumulative_error: Option<f64>,
    /// Training rows.
    pub n_train: usize,
    /// Test rows.
    pub n_test: usize,
    /// Seconds the point took (when it was trained).
    pub wall_s: f64,
    /// Feature cache use, when the point was trained now (`None`: read back).
    pub cache: Option<CacheStats>,
    /// With cross-validation: per fold, its heads' scores and cumulative error.
    pub folds: Vec<FoldScores>,
}

/// One fold's heads' scores and cumulative error.
pub type FoldScores = (Vec<HeadResult>, Option<f64>);

/// What [`Experiment::run`] wrote.
#[derive(Debug)]
pub struct ExperimentSummary {
    /// The output folder.
    pub dir: PathBuf,
    /// Every point's result.
    pub results: Vec<PointResult>,
    /// The text of `results.md`.
    pub markdown: String,
    /// Seconds the whole sweep took.
    pub wall_s: f64,
}
