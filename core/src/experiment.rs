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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::config::LoadedConfig;
use crate::features::CacheStats;
use crate::progress::Progress;
use crate::run::{self, TrainOptions};
use crate::{fsutil, Error, Result};

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
    /// instead of failing ([`fsutil::OutputLock`]).
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

impl Experiment {
    /// Reads an experiment file and its base configuration, and checks every point's configuration.
    pub fn from_file(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: ExperimentConfig =
            toml::from_str(&text).map_err(|e| Error::config(path, e.to_string().trim_end().to_string()))?;
        let dir = parent(path);
        let base_path = dir.join(&config.base);
        let base_text = std::fs::read_to_string(&base_path).map_err(|e| Error::io(&base_path, e))?;
        let mut base: toml::Table = toml::from_str(&base_text)
            .map_err(|e| Error::config(&base_path, e.to_string().trim_end().to_string()))?;
        merge(&mut base, &config.overrides);
        let points = points(path, &config, &base)?;
        for p in &points {
            LoadedConfig::from_str(&p.config, &base_path)
                .map_err(|e| Error::config(path, format!("point {}: {e}", p.name)))?;
        }
        Ok(Experiment { path: path.to_path_buf(), config, base_path, points })
    }

    /// The output folder: the experiment's `out` relative to its file, or `runs/<file stem>`.
    pub fn default_out(&self) -> PathBuf {
        match &self.config.out {
            Some(o) => parent(&self.path).join(o),
            None => PathBuf::from("runs").join(self.path.file_stem().unwrap_or_default()),
        }
    }

    /// Runs (or reads back) every point, then writes `results.csv`,
    /// `results.md` and the plots. `on_point` hears of each finished point.
    pub fn run(
        &self,
        opts: &ExperimentOptions,
        progress: &mut dyn Progress,
        on_point: &mut dyn FnMut(usize, &PointResult),
    ) -> Result<ExperimentSummary> {
        let start = Instant::now();
        let dir = opts.out.clone().unwrap_or_else(|| self.default_out());
        let _lock = fsutil::OutputLock::acquire(&dir, opts.wait)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut results = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            let cfg = LoadedConfig::from_str(&p.config, &self.base_path)?;
            let run_dir = dir.join(&p.name);
            let wall_file = run_dir.join("wall_seconds.txt");
            let (cache, wall_s) = if run_dir.join("metrics.json").is_file() && !opts.force {
                let wall = std::fs::read_to_string(&wall_file).ok().and_then(|s| s.trim().parse().ok());
                (None, wall.unwrap_or(f64::NAN))
            } else {
                let t0 = Instant::now();
                let topts = TrainOptions {
                    out: run_dir.clone(),
                    resume: false,
                    force: true,
                    report: opts.report,
                    wait: opts.wait,
                };
                let summary = run::train_run(&cfg, &topts, progress)?;
                let wall = t0.elapsed().as_secs_f64();
                fsutil::write_atomic(&wall_file, format!("{wall:.3}\n").as_bytes())?;
                (Some(summary.cache), wall)
            };
            let mut r = read_point(p, &run_dir)?;
            r.cache = cache;
            r.wall_s = wall_s;
            on_point(i, &r);
            results.push(r);
        }
        fsutil::write_atomic(&dir.join("results.csv"), results_csv(&results)?.as_bytes())?;
        let markdown = results_markdown(&results);
        fsutil::write_atomic(&dir.join("results.md"), markdown.as_bytes())?;
        for (head, png) in error_plots(&results)? {
            fsutil::write_atomic(&dir.join(format!("error_{head}.png")), &png)?;
        }
        for (head, png) in bifurcation_plots(&results)? {
            fsutil::write_atomic(&dir.join(format!("bifurcation_{head}.png")), &png)?;
        }
        Ok(ExperimentSummary { dir, results, markdown, wall_s: start.elapsed().as_secs_f64() })
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Merges `over` into `base`, table by table; other values replace.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `0.1` -> `0.10`, `0.95` -> `0.95`: at least two decimals, no trailing noise.
fn fraction(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0');
    if s.len() - s.find('.').map_or(s.len(), |i| i + 1) < 2 {
        format!("{v:.2}")
    } else {
        s.to_string()
    }
}

/// `0.1` -> `0.1`, `1 - 0.9` -> `0.1`: the shortest form to 4 decimals, as the thesis writes splits.
fn short(v: f64) -> String {
    format!("{}", (v * 1e4).round() / 1e4)
}

/// Every combination of the sweep's lists, as points.
fn points(path: &Path, cfg: &ExperimentConfig, base: &toml::Table) -> Result<Vec<Point>> {
    let s = &cfg.sweep;
    let training = base.get("training").and_then(toml::Value::as_table);
    let base_tf =
        training.and_then(|t| t.get("test_fraction")).and_then(toml::Value::as_float).unwrap_or(0.2);
    let base_seed =
        training.and_then(|t| t.get("seed")).and_then(toml::Value::as_integer).unwrap_or(0) as u64;
    let base_heads: Vec<toml::Table> = base
        .get("heads")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(|h| h.as_table().cloned()).collect())
        .unwrap_or_default();
    let extractors: Vec<Option<&toml::Table>> =
        if s.extractors.is_empty() { vec![None] } else { s.extractors.iter().map(Some).collect() };
    let type_of = |t: Option<&toml::Table>| {
        t.or_else(|| base.get("extractor").and_then(toml::Value::as_table))
            .and_then(|t| t.get("type"))
            .and_then(toml::Value::as_str)
            .unwrap_or("extractor")
            .to_string()
    };
    let types: Vec<String> = extractors.iter().map(|t| type_of(*t)).collect();
    let extractor_labels: Vec<String> = types
        .iter()
        .enumerate()
        .map(
            |(i, t)| {
                if types.iter().filter(|u| *u == t).count() > 1 {
                    format!("{t}-{i}")
                } else {
                    t.clone()
                }
            },
        )
        .collect();
    let trunks: Vec<Option<&Vec<i64>>> =
        if s.trunks.is_empty() { vec![None] } else { s.trunks.iter().map(Some).collect() };
    let head_sets: Vec<Option<&Vec<String>>> =
        if s.head_sets.is_empty() { vec![None] } else { s.head_sets.iter().map(Some).collect() };
    for set in s.head_sets.iter() {
        for name in set {
            if !base_heads.iter().any(|h| head_name(h) == *name) {
                return Err(Error::config(
                    path,
                    format!(
                        "sweep.head_sets names `{name}`, which the base config does not declare (heads: {})",
                        base_heads.iter().map(head_name).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    for (i, t) in s.taps.iter().enumerate() {
        if t.is_empty() {
            return Err(Error::config(path, format!("sweep.taps[{i}] is empty; name at least one tap")));
        }
        if let Some(j) = s.taps[..i].iter().position(|u| u == t) {
            return Err(Error::config(
                path,
                format!(
                    "sweep.taps[{i}] repeats sweep.taps[{j}] ({}): its points would share run folders",
                    t.join("+")
                ),
            ));
        }
    }
    let taps: Vec<Option<&Vec<String>>> =
        if s.taps.is_empty() { vec![None] } else { s.taps.iter().map(Some).collect() };
    let tfs = if s.test_fractions.is_empty() { vec![base_tf] } else { s.test_fractions.clone() };
    let base_folds =
        training.and_then(|t| t.get("folds")).and_then(toml::Value::as_integer).unwrap_or(0) as usize;
    let fold_values = if s.folds.is_empty() { vec![base_folds] } else { s.folds.clone() };
    if let Some(k) = s.folds.iter().find(|k| **k == 1) {
        return Err(Error::config(path, format!("sweep.folds = {k}: use 0 (one split) or at least 2 folds")));
    }
    let seeds = if s.seeds.is_empty() { vec![base_seed] } else { s.seeds.clone() };
    let mut out = Vec::new();
    for (ext, ext_label) in extractors.iter().zip(&extractor_labels) {
        for heads in &head_sets {
            for trunk in &trunks {
                for tap in &taps {
                    for &tf in &tfs {
                        for &folds in &fold_values {
                            for &seed in &seeds {
                                let mut c = base.clone();
                                if let Some(e) = ext {
                                    c.insert("extractor".into(), toml::Value::Table((*e).clone()));
                                }
                                let mut kept: Vec<toml::Table> = match heads {
                                    Some(names) => names
                                        .iter()
                                        .filter_map(|n| {
                                            base_heads.iter().find(|h| head_name(h) == *n).cloned()
                                        })
                                        .collect(),
                                    None => base_heads.clone(),
                                };
                                if let Some(t) = tap {
                                    for h in &mut kept {
                                        let names =
                                            t.iter().map(|n| toml::Value::String(n.clone())).collect();
                                        h.insert("taps".into(), toml::Value::Array(names));
                                    }
                                }
                                let head_label = kept.iter().map(head_name).collect::<Vec<_>>().join("+");
                                keep_consistency_of(&mut c, &kept);
                                c.insert(
                                    "heads".into(),
                                    toml::Value::Array(kept.into_iter().map(toml::Value::Table).collect()),
                                );
                                set_trunk(&mut c, *trunk);
                                let trunk_label = match c
                                    .get("trunk")
                                    .and_then(|t| t.get("hidden"))
                                    .and_then(toml::Value::as_array)
                                {
                                    Some(h) if !h.is_empty() => {
                                        h.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x")
                                    }
                                    _ => "none".into(),
                                };
                                let t = c
                                    .entry("training")
                                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                                if let Some(t) = t.as_table_mut() {
                                    t.insert("test_fraction".into(), tf.into());
                                    t.insert("seed".into(), (seed as i64).into());
                                    if folds > 0 {
                                        t.insert("folds".into(), (folds as i64).into());
                                    } else {
                                        t.remove("folds");
                                    }
                                }
                                let taps_label = tap.map_or_else(|| BASE_TAPS.to_string(), |t| t.join("+"));
                                let taps_part =
                                    if tap.is_some() { format!("_taps-{taps_label}") } else { String::new() };
                                let folds_part =
                                    if s.folds.is_empty() { String::new() } else { format!("_folds{folds}") };
                                let name = format!(
                                "{ext_label}_{head_label}_trunk-{trunk_label}{taps_part}_test{}{folds_part}_seed{seed}",
                                fraction(tf)
                            );
                                let config =
                                    toml::to_string(&c).map_err(|e| Error::config(path, e.to_string()))?;
                                out.push(Point {
                                    name,
                                    extractor: ext_label.clone(),
                                    heads: head_label,
                                    trunk: trunk_label,
                                    taps: taps_label,
                                    test_fraction: tf,
                                    seed,
                                    folds,
                                    config,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Applies a `sweep.trunks` value: `[]` removes the trunk, sizes set `trunk.hidden`.
fn set_trunk(c: &mut toml::Table, trunk: Option<&Vec<i64>>) {
    match trunk {
        Some(h) if h.is_empty() => {
            c.remove("trunk");
        }
        Some(h) => {
            let mut t = c.get("trunk").and_then(toml::Value::as_table).cloned().unwrap_or_default();
            t.insert("hidden".into(), toml::Value::Array(h.iter().map(|&v| v.into()).collect()));
            c.insert("trunk".into(), toml::Value::Table(t));
        }
        None => {}
    }
}

/// A `[[heads]]` table's name.
fn head_name(h: &toml::Table) -> String {
    h.get("name").and_then(toml::Value::as_str).unwrap_or("").to_string()
}

/// Removes the `[[consistency]]` pairs that name a head not in `kept`.
fn keep_consistency_of(config: &mut toml::Table, kept: &[toml::Table]) {
    let Some(toml::Value::Array(pairs)) = config.get_mut("consistency") else { return };
    let has = |pair: &toml::Value, key: &str| {
        pair.get(key).and_then(toml::Value::as_str).is_some_and(|n| kept.iter().any(|h| head_name(h) == n))
    };
    pairs.retain(|p| has(p, "value") && has(p, "class"));
    if pairs.is_empty() {
        config.remove("consistency");
    }
}

/// Reads a finished point's run folder.
fn read_point(p: &Point, dir: &Path) -> Result<PointResult> {
    let m = run::RunResults::read(dir)?;
    let heads: Vec<HeadResult> = p
        .heads
        .split('+')
        .filter_map(|name| {
            let h = m.heads.get(name)?;
            Some(HeadResult {
                name: name.to_string(),
                kind: h.kind.clone(),
                error_rate: h.error_rate,
                mae: h.metrics.mae(),
                rounded_error: m.rounded_error(name),
                coverage_90: h.metrics.interval.as_ref().and_then(|i| i.coverage_90),
            })
        })
        .collect();
    let folds = m
        .cross_validation
        .as_ref()
        .map(|cv| {
            cv.folds
                .iter()
                .map(|f| {
                    let heads = heads
                        .iter()
                        .map(|h| {
                            let get = |k: &str| f.heads.get(&h.name).and_then(|m| m.get(k)).copied();
                            HeadResult {
                                name: h.name.clone(),
                                kind: h.kind.clone(),
                                error_rate: get("error_rate"),
                                mae: get("mae"),
                                rounded_error: None,
                                coverage_90: get("coverage_90"),
                            }
                        })
                        .collect();
                    (heads, f.cumulative_error)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(PointResult {
        point: p.clone(),
        folds,
        heads,
        best_epoch: m.best_epoch,
        epochs_run: m.epochs_run,
        cumulative_error: m.cumulative_error,
        n_train: m.n_train,
        n_test: m.n_test,
        wall_s: f64::NAN,
        cache: None,
    })
}

/// A number the summary reports for a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Test error rate (discrete heads).
    Error,
    /// Mean absolute error (value heads).
    Mae,
    /// Error rate of the value rounded to its class head's bins.
    Rounded,
    /// Coverage of the 90 % interval.
    Coverage,
}

impl Measure {
    const ALL: [Measure; 4] = [Measure::Error, Measure::Mae, Measure::Rounded, Measure::Coverage];

    fn of(self, h: &HeadResult) -> Option<f64> {
        match self {
            Measure::Error => h.error_rate,
            Measure::Mae => h.mae,
            Measure::Rounded => h.rounded_error,
            Measure::Coverage => h.coverage_90,
        }
    }

    /// The measure's `results.csv` column suffix and `results.md` title.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Measure::Error => ("error_rate", "error"),
            Measure::Mae => ("mae", "MAE"),
            Measure::Rounded => ("rounded_error_rate", "rounded to class: error"),
            Measure::Coverage => ("coverage_90", "90 % interval coverage"),
        }
    }

    /// The `results.csv` column of head `name`.
    fn column(self, name: &str) -> String {
        format!("{name}_{}", self.names().0)
    }

    /// The `results.md` column of head `name`.
    fn title(self, name: &str) -> String {
        format!("{name} {}", self.names().1)
    }

    /// Mean ± std over seeds as `results.md` shows it.
    fn text(self, v: Option<(f64, f64)>) -> String {
        match self {
            Measure::Mae => v.map(|(m, sd)| format!("{m:.5} ± {sd:.5}")).unwrap_or_else(|| "-".into()),
            _ => percent(v),
        }
    }
}

/// Head names over all results, in first-seen order, with the measures any
/// point reports for them (a discrete head's error rate; a value head's MAE,
/// and its rounded error and interval coverage where it has them).
fn head_columns(results: &[PointResult]) -> Vec<(String, Vec<Measure>)> {
    let mut names: Vec<String> = Vec::new();
    for h in results.iter().flat_map(|r| &r.heads) {
        if !names.contains(&h.name) {
            names.push(h.name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let has = |m: Measure| {
                results.iter().flat_map(|r| &r.heads).any(|h| h.name == name && m.of(h).is_some())
            };
            let mut measures: Vec<Measure> = Measure::ALL.into_iter().filter(|m| has(*m)).collect();
            if measures.contains(&Measure::Error) {
                measures.retain(|m| *m == Measure::Error);
            }
            (name, measures)
        })
        .collect()
}

fn cell(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// `results.csv`: one row per point.
pub fn results_csv(results: &[PointResult]) -> Result<String> {
    let heads = head_columns(results);
    let taps = has_taps(results);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "point",
        "extractor",
        "heads",
        "trunk",
        "test_fraction",
        "train_fraction",
        "seed",
        "n_train",
        "n_test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if taps {
        header.insert(4, "taps".into());
    }
    let folds = results.iter().any(|r| r.point.folds > 0);
    if folds {
        header.push("folds".into());
    }
    for (name, measures) in &heads {
        header.extend(measures.iter().map(|m| m.column(name)));
    }
    header.extend(["cumulative_error", "best_epoch", "epochs_run", "wall_seconds"].map(String::from));
    w.write_record(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    for r in results {
        let p = &r.point;
        let mut row = vec![
            p.name.clone(),
            p.extractor.clone(),
            p.heads.clone(),
            p.trunk.clone(),
            p.test_fraction.to_string(),
            short(1.0 - p.test_fraction),
            p.seed.to_string(),
            r.n_train.to_string(),
            r.n_test.to_string(),
        ];
        if taps {
            row.insert(4, p.taps.clone());
        }
        if folds {
            row.push(p.folds.to_string());
        }
        for (name, measures) in &heads {
            let h = r.heads.iter().find(|h| h.name == *name);
            row.extend(measures.iter().map(|m| cell(h.and_then(|h| m.of(h)))));
        }
        row.extend([
            cell(r.cumulative_error),
            r.best_epoch.to_string(),
            r.epochs_run.to_string(),
            cell(Some(r.wall_s)).trim_end_matches('0').to_string(),
        ]);
        w.write_record(&row).map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A measure's values over `points`: each fold's (`of_fold`) for a
/// cross-validated point that has them, else the point's own (`of_point`);
/// NaN where there is none.
fn values(
    points: &[&PointResult],
    of_point: &dyn Fn(&PointResult) -> Option<f64>,
    of_fold: &dyn Fn(&FoldScores) -> Option<f64>,
) -> Vec<f64> {
    let mut out = Vec::new();
    for p in points {
        let folds: Vec<f64> = p.folds.iter().filter_map(of_fold).collect();
        if folds.is_empty() {
            out.push(of_point(p).unwrap_or(f64::NAN));
        } else {
            out.extend(folds);
        }
    }
    out
}

/// Mean and sample standard deviation of the finite values (`None` when there are none).
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    Some((mean, var.sqrt()))
}

fn percent(v: Option<(f64, f64)>) -> String {
    v.map(|(m, s)| format!("{:.4} ± {:.4} %", 100.0 * m, 100.0 * s)).unwrap_or_else(|| "-".into())
}

/// Results grouped by [`Point::group`] (in first-seen order), each group's
/// points grouped by test fraction (ascending).
#[allow(clippy::type_complexity)]
fn grouped(results: &[PointResult]) -> Vec<(String, Vec<(f64, Vec<&PointResult>)>)> {
    let mut groups: Vec<(String, Vec<(f64, Vec<&PointResult>)>)> = Vec::new();
    for r in results {
        let g = r.point.group();
        let i = groups.iter().position(|(n, _)| *n == g).unwrap_or_else(|| {
            groups.push((g, Vec::new()));
            groups.len() - 1
        });
        let rows = &mut groups[i].1;
        match rows.iter_mut().find(|(tf, _)| *tf == r.point.test_fraction) {
            Some((_, v)) => v.push(r),
            None => rows.push((r.point.test_fraction, vec![r])),
        }
    }
    for (_, rows) in &mut groups {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    groups
}

/// `results.md`: per extractor, head set and trunk, a table in the thesis's
/// form: split (test-train), error rate mean ± std over seeds per head,
/// mean epochs to the best validation loss; the cumulative error with more
/// than one discrete head; MAE (and rounded-class error) for regression heads.
pub fn results_markdown(results: &[PointResult]) -> String {
    let mut s = String::new();
    let taps = has_taps(results);
    for (group, rows) in grouped(results) {
        let Some(first) = rows.first().and_then(|r| r.1.first()) else { continue };
        let columns = head_columns(results);
        let heads: Vec<&(String, Vec<Measure>)> =
            columns.iter().filter(|(name, _)| first.heads.iter().any(|h| h.name == *name)).collect();
        let discrete = heads.iter().filter(|(_, m)| m.contains(&Measure::Error)).count();
        let seeds = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        let over = if first.folds.is_empty() {
            "seeds".to_string()
        } else {
            format!("the {} folds of every seed (cross-validation)", first.point.folds)
        };
        let _ =
            writeln!(s, "### {group}\n\n{seeds} seed(s) per split; error rate as mean ± std over {over}.\n");
        let mut header = vec!["test-train split".to_string()];
        if taps {
            header.push("taps".into());
        }
        for (name, measures) in &heads {
            header.extend(measures.iter().map(|m| m.title(name)));
        }
        if discrete > 1 {
            header.push("cumulative error".into());
        }
        header.extend(["epochs to best".to_string(), "seconds".to_string()]);
        let _ = writeln!(s, "| {} |", header.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(header.len()));
        for (tf, points) in &rows {
            let mut row = vec![format!("{}-{}", short(*tf), short(1.0 - tf))];
            if taps {
                row.push(first.point.taps.clone());
            }
            let over = |f: &dyn Fn(&PointResult) -> Option<f64>| {
                mean_std(&points.iter().map(|p| f(p).unwrap_or(f64::NAN)).collect::<Vec<_>>())
            };
            for (name, measures) in &heads {
                for m in measures {
                    let of = |hs: &[HeadResult]| hs.iter().find(|x| x.name == *name).and_then(|x| m.of(x));
                    let v = mean_std(&values(points, &|p| of(&p.heads), &|f| of(&f.0)));
                    row.push(m.text(v));
                }
            }
            if discrete > 1 {
                row.push(percent(mean_std(&values(points, &|p| p.cumulative_error, &|f| f.1))));
            }
            let epochs = over(&|p| Some(p.best_epoch as f64)).map(|(m, _)| format!("{m:.0}"));
            row.push(epochs.unwrap_or_else(|| "-".into()));
            let wall = over(&|p| Some(p.wall_s)).map(|(m, _)| format!("{m:.1}"));
            row.push(wall.unwrap_or_else(|| "-".into()));
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        s.push('\n');
    }
    if taps {
        s.push_str(&bifurcation_markdown(results));
    }
    s
}

/// One PNG per head: mean error rate (%) against training fraction, one line
/// per group; regression heads plot their MAE.
fn error_plots(results: &[PointResult]) -> Result<Vec<(String, Vec<u8>)>> {
    let groups = grouped(results);
    let mut out = Vec::new();
    for (head, measures) in head_columns(results) {
        let regression = !measures.contains(&Measure::Error);
        let mut series = Vec::new();
        for (group, rows) in &groups {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|(tf, ps)| {
                    let v: Vec<f64> = ps
                        .iter()
                        .filter_map(|p| p.heads.iter().find(|h| h.name == head))
                        .filter_map(|h| if regression { h.mae } else { h.error_rate.map(|e| 100.0 * e) })
                        .collect();
                    mean_std(&v).map(|(m, _)| (1.0 - tf, m))
                })
                .collect();
            if !points.is_empty() {
                series.push((group.clone(), points));
            }
        }
        let y = if regression { "MAE" } else { "test error rate (%)" };
        let png = crate::report::plots::xy_png(
            &format!("{head}: {y} against training fraction"),
            "training fraction",
            y,
            &series,
        )
        .map_err(|e| Error::Invalid(format!("plot of {head}: {e}")))?;
        out.push((head, png));
    }
    Ok(out)
}

/// Whether the results come from a sweep over `taps`.
fn has_taps(results: &[PointResult]) -> bool {
    results.iter().any(|r| r.point.has_taps())
}

/// The title of head `head`'s bifurcation map.
fn bifurcation_title(head: &str) -> String {
    format!("{head}: where in the network it lives")
}

/// Mean ± std over seeds per test fraction, one cell per taps value.
type FractionRows = Vec<(f64, Vec<Option<(f64, f64)>>)>;

/// One head's bifurcation map.
struct BifurcationMap {
    /// The head.
    head: String,
    /// What is shown: its error rate (discrete heads) or MAE (value heads).
    measure: Measure,
    /// The taps labels, in sweep order.
    taps: Vec<String>,
    /// Per context ([`Point::context`], first-seen order): per test fraction
    /// (ascending), the measure's mean ± std over seeds at each taps value.
    lines: Vec<(String, FractionRows)>,
}

/// Every head's bifurcation map (none when the sweep has no `taps`).
fn bifurcation_maps(results: &[PointResult]) -> Vec<BifurcationMap> {
    let tapped: Vec<&PointResult> = results.iter().filter(|r| r.point.has_taps()).collect();
    let mut taps: Vec<String> = Vec::new();
    for r in &tapped {
        if !taps.contains(&r.point.taps) {
            taps.push(r.point.taps.clone());
        }
    }
    if taps.is_empty() {
        return Vec::new();
    }
    let mut maps = Vec::new();
    for (head, measures) in head_columns(results) {
        // The measure the summaries lead with: error rate, else MAE.
        let measure = if measures.contains(&Measure::Error) { Measure::Error } else { Measure::Mae };
        let with_head: Vec<&PointResult> =
            tapped.iter().copied().filter(|r| r.heads.iter().any(|h| h.name == head)).collect();
        let mut contexts: Vec<String> = Vec::new();
        for r in &with_head {
            let c = r.point.context();
            if !contexts.contains(&c) {
                contexts.push(c);
            }
        }
        let mut lines = Vec::new();
        for context in contexts {
            let here: Vec<&PointResult> =
                with_head.iter().copied().filter(|r| r.point.context() == context).collect();
            let mut tfs: Vec<f64> = Vec::new();
            for r in &here {
                if !tfs.contains(&r.point.test_fraction) {
                    tfs.push(r.point.test_fraction);
                }
            }
            tfs.sort_by(f64::total_cmp);
            let rows = tfs
                .into_iter()
                .map(|tf| {
                    let cells = taps
                        .iter()
                        .map(|t| {
                            let v: Vec<f64> = here
                                .iter()
                                .filter(|r| r.point.taps == *t && r.point.test_fraction == tf)
                                .filter_map(|r| r.heads.iter().find(|h| h.name == head))
                                .map(|h| measure.of(h).unwrap_or(f64::NAN))
                                .collect();
                            mean_std(&v)
                        })
                        .collect();
                    (tf, cells)
                })
                .collect();
            lines.push((context, rows));
        }
        maps.push(BifurcationMap { head, measure, taps: taps.clone(), lines });
    }
    maps
}

/// The `## Bifurcation map` section of `results.md`: per head, its plot and
/// a table, rows = taps (sweep order), columns = test fractions.
fn bifurcation_markdown(results: &[PointResult]) -> String {
    let maps = bifurcation_maps(results);
    if maps.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Bifurcation map\n\nWhere in the network each head lives: its test error (MAE for a value head) \
         as mean ± std over seeds, by the taps every head read (rows, in sweep order) and the test \
         fraction (columns).\n\n",
    );
    for map in maps {
        let _ = writeln!(
            s,
            "### {}\n\n![{}](bifurcation_{}.png)\n",
            map.measure.title(&map.head),
            bifurcation_title(&map.head),
            map.head
        );
        let several = map.lines.len() > 1;
        for (context, rows) in &map.lines {
            if several {
                let _ = writeln!(s, "{context}:\n");
            }
            let mut header = vec!["taps".to_string()];
            header.extend(rows.iter().map(|(tf, _)| format!("test {}", short(*tf))));
            let _ = writeln!(s, "| {} |", header.join(" | "));
            let _ = writeln!(s, "|{}", " --- |".repeat(header.len()));
            for (i, t) in map.taps.iter().enumerate() {
                let mut row = vec![t.clone()];
                row.extend(rows.iter().map(|(_, cells)| map.measure.text(cells[i])));
                let _ = writeln!(s, "| {} |", row.join(" | "));
            }
            s.push('\n');
        }
    }
    s
}

/// One PNG per head: its mean error rate (%, discrete heads) or MAE (value
/// heads) over seeds against the taps it read, one line per test fraction.
fn bifurcation_plots(results: &[PointResult]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for map in bifurcation_maps(results) {
        let percent = map.measure == Measure::Error;
        let several = map.lines.len() > 1;
        let mut series = Vec::new();
        for (context, rows) in &map.lines {
            for (tf, cells) in rows {
                let label = if several {
                    format!("{context}: test {}", short(*tf))
                } else {
                    format!("test {}", short(*tf))
                };
                let ys = cells.iter().map(|c| c.map(|(m, _)| if percent { 100.0 * m } else { m })).collect();
                series.push((label, ys));
            }
        }
        let y = if percent { "test error rate (%)" } else { "MAE" };
        let title = bifurcation_title(&map.head);
        let png = crate::report::plots::categories_png(&title, "taps the head reads", y, &map.taps, &series)
            .map_err(|e| Error::Invalid(format!("bifurcation map of {}: {e}", map.head)))?;
        out.push((map.head, png));
    }
    Ok(out)
}
