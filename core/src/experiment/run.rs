//! Running an experiment: each point trained through
//! [`crate::run::train_run`] (or read back from its run folder), then the
//! summary files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::bifurcation::bifurcation_plots;
use super::points::{merge, parent, points};
use super::tables::{error_plots, results_csv, results_markdown};
use super::{
    Experiment, ExperimentConfig, ExperimentOptions, ExperimentSummary, HeadResult, Point, PointResult,
};
use crate::config::LoadedConfig;
use crate::progress::Progress;
use crate::run::{self, TrainOptions};
use crate::{fsutil, Error, Result};

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
        crate::fsutil::out_folder(&self.path, self.config.out.as_deref())
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
