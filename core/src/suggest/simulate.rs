//! The learning curve of each [`Strategy`] on a fully labelled set
//! (`furcate suggest --simulate FILE`): hide the labels, start from a few
//! images per class, add `batch` images per round chosen by the strategy,
//! retrain the heads each round, and score them on a fixed held-out part.
//!
//! ```toml
//! base = "active_base.toml"     # a run config whose data are fully labelled
//! out = "../../runs/active"     # relative to this file (default: runs/<file name>)
//! strategies = ["random", "margin", "entropy", "kcentre", "diverse"]
//! seeds = [0, 1, 2]             # each: its own test part, start and random choices
//! test_fraction = 0.5           # the fixed held-out part; the rest is the pool
//! initial_per_class = 1         # the start: this many images of every class of every discrete head
//! batch = 7                     # images added per round
//! rounds = 20
//! heads = ["morphology"]        # whose uncertainty chooses (default: every head)
//! ```
//!
//! Each round trains the base config's heads exactly as `furcate train`
//! would on the labelled images (its choices of taps and weight decay by
//! k-fold inside them, on the cached features: nothing is extracted twice),
//! and the strategy ranks the rest of the pool with that model
//! ([`super::rank`], the labelled images as the covered centres). Every
//! strategy of a seed starts from the same images and is scored on the same
//! test part. The base config's `test_fraction` is not used; tiled data
//! (`[data] tile`) and `semi_supervised` are refused.
//!
//! The output folder gets `curve.csv` (one row per strategy, seed, round
//! and head), `curve.md` (per head, the mean ± std over seeds by round, and
//! how many labels each strategy needs to reach the random choice's final
//! error) and `curve_<head>.png` (error against labels, a line per strategy).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use tch::{Kind, Tensor};

use super::{head_columns, head_indices, rank, select, signals, Candidates, Strategy};
use crate::config::{line_of, LoadedConfig};
use crate::data::{split, Dataset};
use crate::extractor::FeatureExtractor;
use crate::progress::{Progress, Silent};
use crate::run::aggregate::mean_std;
use crate::run::assemble::select_rows;
use crate::run::fit::{fit_rows, FitData, Fitted};
use crate::run::output::PredictionTable;
use crate::run::parts::{check_columns, strata, validation_split};
use crate::run::{evaluate, features_for, predict_features, Features};
use crate::{fsutil, Error, Result};

fn default_strategies() -> Vec<Strategy> {
    vec![
        Strategy::Random,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::KCentre,
        Strategy::Diverse,
        Strategy::Badge,
    ]
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

fn default_test_fraction() -> f64 {
    0.5
}

fn default_initial() -> usize {
    1
}

fn default_batch() -> usize {
    10
}

fn default_rounds() -> usize {
    10
}

/// A simulation file (see the module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// The run configuration, relative to the simulation file; its data must be labelled.
    pub base: PathBuf,
    /// The output folder, relative to the simulation file (default: `runs/<file stem>`).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// The strategies compared (default: all six).
    #[serde(default = "default_strategies")]
    pub strategies: Vec<Strategy>,
    /// The repetitions (default `[0]`).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The held-out part, in `(0, 1)` (default 0.5).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Images of every class of every discrete head to start from (default 1).
    #[serde(default = "default_initial")]
    pub initial_per_class: usize,
    /// Images added per round (default 10).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Rounds of adding (default 10).
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// The heads whose uncertainty and features choose (default: every head).
    #[serde(default)]
    pub heads: Vec<String>,
}

/// A parsed simulation with its base run configuration.
#[derive(Debug)]
pub struct Simulation {
    /// The simulation file.
    pub path: PathBuf,
    /// Its contents.
    pub config: SimulationConfig,
    /// The base run configuration.
    pub base: LoadedConfig,
}

/// One head's score after one round.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// The strategy.
    pub strategy: Strategy,
    /// The seed.
    pub seed: u64,
    /// 0: the start.
    pub round: usize,
    /// Labelled images the heads trained on.
    pub labels: usize,
    /// The head.
    pub head: String,
    /// `error_rate` (discrete heads) or `mae` (value heads).
    pub measure: &'static str,
    /// Its value on the test part.
    pub value: f64,
}

/// What [`Simulation::run`] returns.
#[derive(Debug)]
pub struct SimulationSummary {
    /// The output folder.
    pub dir: PathBuf,
    /// Every point of every curve.
    pub points: Vec<CurvePoint>,
    /// `curve.md`.
    pub markdown: String,
    /// Seconds the whole simulation took.
    pub wall_s: f64,
}

use crate::fsutil::parent_dir as parent;

impl Simulation {
    /// Reads a simulation file and its base configuration; a bad value is an
    /// error naming its line.
    pub fn from_file(path: &Path) -> Result<Simulation> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: SimulationConfig =
            toml::from_str(&text).map_err(|e| Error::config(path, e.to_string().trim_end().to_string()))?;
        let at = |key: &str, message: String| match line_of(&text, &format!("{key} ="), 0) {
            Some(line) => Error::config(path, format!("line {line}: {message}")),
            None => Error::config(path, message),
        };
        if !(config.test_fraction > 0.0 && config.test_fraction < 1.0) {
            return Err(at(
                "test_fraction",
                format!("test_fraction must be in (0, 1), got {}", config.test_fraction),
            ));
        }
        for (key, v) in [
            ("batch", config.batch),
            ("rounds", config.rounds),
            ("initial_per_class", config.initial_per_class),
        ] {
            if v == 0 {
                return Err(at(key, format!("{key} must be at least 1")));
            }
        }
        if config.strategies.is_empty() {
            return Err(at("strategies", "strategies is empty: name at least one".into()));
        }
        if config.seeds.is_empty() {
            return Err(at("seeds", "seeds is empty: name at least one".into()));
        }
        let base_path = parent(path).join(&config.base);
        let base = LoadedConfig::from_file(&base_path)?;
        let names: Vec<&str> = base.config.heads.iter().map(|h| h.name()).collect();
        if let Some(bad) = config.heads.iter().find(|h| !names.contains(&h.as_str())) {
            return Err(at(
                "heads",
                format!("no head `{bad}` in {}; its heads are: {}", base_path.display(), names.join(", ")),
            ));
        }
        if !base.config.training.semi_supervised.is_off() {
            return Err(base.error_at_key(
                "semi_supervised",
                0,
                "the simulation fits the heads on the labelled images only: set semi_supervised = \"off\" \
                 in the base config of a simulation",
            ));
        }
        if base.config.data.tile.is_some() {
            return Err(at(
                "base",
                format!(
                    "{} tiles its images ([data] tile): the simulation works on whole images",
                    base_path.display()
                ),
            ));
        }
        Ok(Simulation { path: path.to_path_buf(), config, base })
    }

    /// The output folder: the file's `out` relative to it, or `runs/<file stem>`.
    pub fn default_out(&self) -> PathBuf {
        crate::fsutil::out_folder(&self.path, self.config.out.as_deref())
    }

    /// Runs every seed and strategy and writes the output folder (`out`, else
    /// [`Simulation::default_out`]). `on_round` hears of each round's scores.
    pub fn run(
        &self,
        out: Option<PathBuf>,
        progress: &mut dyn Progress,
        on_round: &mut dyn FnMut(&[CurvePoint]),
    ) -> Result<SimulationSummary> {
        let start = Instant::now();
        let dir = out.unwrap_or_else(|| self.default_out());
        let cfg = &self.base;
        let c = &cfg.config;
        crate::runtime::apply_config_threads(&c.runtime);
        let images = Dataset::load(&c.data, &cfg.dir())?;
        check_columns(cfg, &images)?;
        let extractor = c.extractor.build(&cfg.build_context())?;
        let features = features_for(cfg, extractor.as_ref(), &images, progress)?;
        let world = World {
            cfg,
            extractor: extractor.as_ref(),
            images: &images,
            features: &features,
            strata: strata(c, &images)?,
        };
        let s = &self.config;
        let total = (s.seeds.len() * s.strategies.len() * (s.rounds + 1)) as u64;
        progress.start("simulating", total);
        let mut done = 0;
        let mut points = Vec::new();
        for &seed in &s.seeds {
            let parts = split::stratified(&world.strata, s.test_fraction, 0.0, seed);
            let pool: Vec<usize> = parts.train.iter().chain(&parts.val).copied().collect();
            let initial = world.initial(&pool, s.initial_per_class, s.batch, seed)?;
            let space = world.standardised(&pool)?;
            for &strategy in &s.strategies {
                let mut labelled = initial.clone();
                for round in 0..=s.rounds {
                    let fitted = world.fit(&labelled)?;
                    let scored = world.score(&fitted, &parts.test, strategy, seed, round, labelled.len())?;
                    done += 1;
                    let message = scored
                        .iter()
                        .map(|p| format!("{} {}", p.head, value_text(p.measure, p.value)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    progress.advance(
                        done,
                        Some(&format!("seed {seed} {strategy} {} labels: {message}", labelled.len())),
                    );
                    on_round(&scored);
                    points.extend(scored);
                    if round == s.rounds {
                        break;
                    }
                    let rest: Vec<usize> = pool.iter().copied().filter(|i| !labelled.contains(i)).collect();
                    if rest.is_empty() {
                        break;
                    }
                    let keep = head_indices(&fitted.model, &s.heads)?;
                    let table =
                        PredictionTable::predict(&fitted.model, &fitted.rows(&features.features, &rest))?;
                    let (heads, _) = signals(&fitted.model, &fitted.states, &table, None, &keep);
                    let columns = head_columns(&fitted.model, &keep);
                    let candidates = select(&select_rows(&space, &rest), columns.as_deref());
                    let known = select(&select_rows(&space, &labelled), columns.as_deref());
                    let c = Candidates { features: &candidates, labelled: Some(&known), heads: &heads };
                    let draw = seed.wrapping_mul(1_000_003).wrapping_add(round as u64);
                    let picks = rank(strategy, &c, s.batch, draw, &mut Silent)?;
                    labelled.extend(picks.iter().map(|p| rest[p.index]));
                }
            }
        }
        progress.finish();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        fsutil::write_atomic(&dir.join("curve.csv"), curve_csv(&points)?.as_bytes())?;
        let markdown = curve_markdown(self, &points, images.len());
        fsutil::write_atomic(&dir.join("curve.md"), markdown.as_bytes())?;
        for (head, png) in curve_plots(&points)? {
            fsutil::write_atomic(&dir.join(format!("curve_{head}.png")), &png)?;
        }
        Ok(SimulationSummary { dir, points, markdown, wall_s: start.elapsed().as_secs_f64() })
    }
}

/// A score as text: an error rate in %, a MAE as it is.
fn value_text(measure: &str, v: f64) -> String {
    if measure == "error_rate" {
        format!("{:.2} %", 100.0 * v)
    } else {
        format!("MAE {v:.4}")
    }
}

/// The fully labelled set a simulation works on.
struct World<'a> {
    cfg: &'a LoadedConfig,
    extractor: &'a dyn FeatureExtractor,
    images: &'a Dataset,
    features: &'a Features,
    strata: Vec<String>,
}

impl World<'_> {
    /// The start: `per_class` images of every class of every discrete head
    /// (each head in turn, in a seeded random order of `pool`); `batch`
    /// random images when no head is discrete.
    fn initial(&self, pool: &[usize], per_class: usize, batch: usize, seed: u64) -> Result<Vec<usize>> {
        let mut order = pool.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x6163_7469_7665));
        let discrete: Vec<_> = self.cfg.config.heads.iter().filter(|h| h.stratify()).collect();
        if discrete.is_empty() {
            return Ok(order.into_iter().take(batch).collect());
        }
        let mut chosen: Vec<usize> = Vec::new();
        for h in discrete {
            let labels = self.images.labels(h.column())?;
            let mut count = std::collections::BTreeMap::<&str, usize>::new();
            for &i in &chosen {
                if let Some(l) = labels[i] {
                    *count.entry(l).or_default() += 1;
                }
            }
            for &i in &order {
                let Some(l) = labels[i] else { continue };
                let n = count.entry(l).or_default();
                if *n < per_class && !chosen.contains(&i) {
                    *n += 1;
                    chosen.push(i);
                }
            }
        }
        Ok(chosen)
    }

    /// Every row's features standardised over the rows `pool` (the
    /// unlabelled images are known, so their spread measures distance).
    fn standardised(&self, pool: &[usize]) -> Result<Tensor> {
        let f = self.features.features.to_kind(Kind::Float);
        let rows = select_rows(&f, pool);
        let mean = rows.f_mean_dim(0, true, Kind::Float)?;
        let std = rows.f_std_dim(0, false, true)?;
        let std = std.where_self(&std.gt(1e-6), &std.ones_like());
        Ok((f - mean) / std)
    }

    /// The heads trained as `furcate train` would on the images `labelled`.
    fn fit(&self, labelled: &[usize]) -> Result<Fitted> {
        let t = &self.cfg.config.training;
        let data = self.images.subset(labelled);
        let features = select_rows(&self.features.features, labelled);
        let strata: Vec<String> = labelled.iter().map(|&i| self.strata[i].clone()).collect();
        let all: Vec<usize> = (0..labelled.len()).collect();
        let (train, val, _) = validation_split(t, &strata, &all);
        let parts = split::Split { train, val, test: Vec::new() };
        let rows = FitData {
            data: &data,
            features: &features,
            layout: &self.features.layout,
            strata: &strata,
            groups: None,
            base: None,
            scale_rows: None,
        };
        fit_rows(self.cfg, self.extractor, &rows, &parts, &mut crate::train::NoCheckpoints, &mut Silent)
            .map_err(|e| Error::Training(format!("{} labelled images: {e}", labelled.len())))
    }

    /// Every head's score of `fitted` on the rows `test`.
    fn score(
        &self,
        fitted: &Fitted,
        test: &[usize],
        strategy: Strategy,
        seed: u64,
        round: usize,
        labels: usize,
    ) -> Result<Vec<CurvePoint>> {
        let c = &self.cfg.config;
        let preds = predict_features(&fitted.model, &fitted.rows(&self.features.features, test))?;
        let eval = evaluate(c, &fitted.model, &preds, &self.images.subset(test))?;
        Ok(eval
            .heads
            .iter()
            .filter_map(|h| {
                let (measure, value) =
                    match (h.score.error_rate, h.score.metrics.values.as_ref().and_then(|v| v.mae)) {
                        (Some(e), _) => ("error_rate", e),
                        (None, Some(m)) => ("mae", m),
                        _ => return None,
                    };
                Some(CurvePoint { strategy, seed, round, labels, head: h.name.clone(), measure, value })
            })
            .collect())
    }
}

/// `curve.csv`: `strategy,seed,round,labels,head,measure,value`.
pub fn curve_csv(points: &[CurvePoint]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Invalid(e.to_string());
    w.write_record(["strategy", "seed", "round", "labels", "head", "measure", "value"]).map_err(err)?;
    for p in points {
        w.write_record([
            p.strategy.name().to_string(),
            p.seed.to_string(),
            p.round.to_string(),
            p.labels.to_string(),
            p.head.clone(),
            p.measure.to_string(),
            format!("{:.6}", p.value),
        ])
        .map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One head's curves: per strategy (first-seen order), per round, the mean
/// labels and the mean ± (population) std of the value over seeds.
pub struct HeadCurves {
    /// The head.
    pub head: String,
    /// `error_rate` or `mae`.
    pub measure: &'static str,
    /// Per strategy: its rounds, in order.
    pub lines: Vec<(Strategy, Vec<RoundStats>)>,
}

/// One round of one strategy over the seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundStats {
    /// Mean labelled images.
    pub labels: f64,
    /// Mean value.
    pub mean: f64,
    /// Population standard deviation of the value.
    pub std: f64,
}

impl HeadCurves {
    /// Labels at which `strategy`'s mean first reaches the random choice's
    /// final mean, and that final (labels, value); `None` without a random
    /// line. The inner `None`: never reached.
    pub fn to_reach_random(&self, strategy: Strategy) -> Option<(Option<f64>, (f64, f64))> {
        let random = self.lines.iter().find(|(s, _)| *s == Strategy::Random)?;
        let last = random.1.last()?;
        let (labels, target) = (last.labels, last.mean);
        let line = &self.lines.iter().find(|(s, _)| *s == strategy)?.1;
        let reached = line.iter().find(|r| r.mean <= target + 1e-12).map(|r| r.labels);
        Some((reached, (labels, target)))
    }
}

/// Per head, its curves.
pub fn curves(points: &[CurvePoint]) -> Vec<HeadCurves> {
    let mut heads: Vec<(String, &'static str)> = Vec::new();
    let mut strategies: Vec<Strategy> = Vec::new();
    for p in points {
        if !heads.iter().any(|(h, _)| *h == p.head) {
            heads.push((p.head.clone(), p.measure));
        }
        if !strategies.contains(&p.strategy) {
            strategies.push(p.strategy);
        }
    }
    heads
        .into_iter()
        .map(|(head, measure)| {
            let lines = strategies
                .iter()
                .map(|&s| {
                    let here: Vec<&CurvePoint> =
                        points.iter().filter(|p| p.head == head && p.strategy == s).collect();
                    let rounds = here.iter().map(|p| p.round).max().map_or(0, |r| r + 1);
                    let rows = (0..rounds)
                        .filter_map(|r| {
                            let at: Vec<&&CurvePoint> = here.iter().filter(|p| p.round == r).collect();
                            let labels: Vec<f64> = at.iter().map(|p| p.labels as f64).collect();
                            let values: Vec<f64> = at.iter().map(|p| p.value).collect();
                            if at.is_empty() {
                                return None;
                            }
                            let (labels, _) = mean_std(&labels);
                            let (mean, std) = mean_std(&values);
                            Some(RoundStats { labels, mean, std })
                        })
                        .collect();
                    (s, rows)
                })
                .collect();
            HeadCurves { head, measure, lines }
        })
        .collect()
}

fn scaled(measure: &str, v: f64) -> f64 {
    if measure == "error_rate" {
        100.0 * v
    } else {
        v
    }
}

fn labels_text(l: f64) -> String {
    if l.fract() == 0.0 {
        format!("{l:.0}")
    } else {
        format!("{l:.1}")
    }
}

/// `curve.md`: the set-up, then per head its plot, the table (rows: rounds,
/// columns: strategies, mean ± std over seeds) and the labels each strategy
/// needs to reach the random choice's final error.
pub fn curve_markdown(sim: &Simulation, points: &[CurvePoint], images: usize) -> String {
    let s = &sim.config;
    let mut md = String::new();
    let _ = writeln!(md, "# Which image to label next: learning curves\n");
    let _ = writeln!(
        md,
        "`furcate suggest --simulate {}`: {} images of {}; per seed a fixed test part of {} and a pool of \
         the rest; start: {} image(s) of every class of every discrete head, then {} image(s) per round for \
         {} rounds; seeds {:?}; choosing by the heads {}.\n",
        sim.path.display(),
        images,
        sim.base.path.display(),
        s.test_fraction,
        s.initial_per_class,
        s.batch,
        s.rounds,
        s.seeds,
        if s.heads.is_empty() { "(all)".to_string() } else { s.heads.join(", ") },
    );
    for hc in curves(points) {
        let unit = if hc.measure == "error_rate" { "test error rate (%)" } else { "test MAE" };
        let _ = writeln!(md, "## {}: {unit}, mean ± std over seeds\n", hc.head);
        let _ = writeln!(md, "![{}](curve_{}.png)\n", hc.head, hc.head);
        let mut header = vec!["round".to_string(), "labels".to_string()];
        header.extend(hc.lines.iter().map(|(st, _)| st.name().to_string()));
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", " --- |".repeat(header.len()));
        let rounds = hc.lines.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
        for r in 0..rounds {
            let labels = hc.lines.iter().find_map(|(_, rows)| rows.get(r)).map_or(f64::NAN, |x| x.labels);
            let mut row = vec![r.to_string(), labels_text(labels)];
            for (_, rows) in &hc.lines {
                row.push(match rows.get(r) {
                    Some(&RoundStats { mean: m, std: sd, .. }) => {
                        let digits = if hc.measure == "error_rate" { 2 } else { 4 };
                        format!(
                            "{:.*} ± {:.*}",
                            digits,
                            scaled(hc.measure, m),
                            digits,
                            scaled(hc.measure, sd)
                        )
                    }
                    None => String::new(),
                });
            }
            let _ = writeln!(md, "| {} |", row.join(" | "));
        }
        md.push('\n');
        let mut reach = Vec::new();
        for (st, _) in &hc.lines {
            if *st == Strategy::Random {
                continue;
            }
            if let Some((reached, (labels, target))) = hc.to_reach_random(*st) {
                let text = match reached {
                    Some(l) => format!("{st}: {} labels ({:.2} of random's)", labels_text(l), l / labels),
                    None => format!("{st}: not within {} labels", labels_text(labels)),
                };
                if reach.is_empty() {
                    reach.push(format!(
                        "Labels needed to reach the random choice's final {} ({}, at {} labels): ",
                        if hc.measure == "error_rate" { "error" } else { "MAE" },
                        value_text(hc.measure, target),
                        labels_text(labels)
                    ));
                }
                reach.push(text);
            }
        }
        if let Some((first, rest)) = reach.split_first() {
            let _ = writeln!(md, "{first}{}.\n", rest.join("; "));
        }
    }
    md
}

/// Per head, a PNG of its mean error (or MAE) against labels, a line per strategy.
fn curve_plots(points: &[CurvePoint]) -> Result<Vec<(String, Vec<u8>)>> {
    curves(points)
        .into_iter()
        .map(|hc| {
            let series: Vec<(String, Vec<(f64, f64)>)> = hc
                .lines
                .iter()
                .map(|(st, rows)| {
                    (
                        st.name().to_string(),
                        rows.iter().map(|r| (r.labels, scaled(hc.measure, r.mean))).collect(),
                    )
                })
                .collect();
            let y = if hc.measure == "error_rate" { "test error rate (%)" } else { "test MAE" };
            let png = crate::report::plots::xy_png(
                &format!("{}: {y} against labels", hc.head),
                "labelled images",
                y,
                &series,
            )
            .map_err(|e| Error::Invalid(format!("plot of {}: {e}", hc.head)))?;
            Ok((hc.head, png))
        })
        .collect()
}
