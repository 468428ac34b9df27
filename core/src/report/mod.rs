//! The run folder's report: plots as PNG and a self-contained `report.html`.
//!
//! [`write_report`] only reads what a training run leaves in its folder
//! ([`write_report_for`] is given the run's results instead of reading them):
//!
//! - `metrics.json` (required): run summary and per-head metrics, read as the
//!   typed [`RunResults`] the run wrote;
//! - `history.csv`: per-epoch losses (`epoch,train_total,val_total,train_<head>...,val_<head>...`);
//! - `predictions.csv`: `file,split,<head>_true,<head>_pred,...`;
//! - `config.toml`: the resolved configuration, shown as text.
//!
//! It writes `plots/loss_total.png`, `plots/loss_<head>.png`,
//! `plots/confusion_<head>.png` (heads whose metrics hold a confusion matrix),
//! `plots/pred_vs_true_<head>.png` (regression heads) and `report.html`, which
//! inlines every plot as a `data:` URI and needs nothing else to display.
//! Every key of `metrics.json` is optional (an older run's file reads with
//! defaults); a head of a kind the report does not know gets a plain table of
//! its metrics.

mod html;
pub(crate) mod plots;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::fsutil::write_atomic;
use crate::metrics::HeadMetrics;
use crate::results::{RunResults, OUT_OF_FOLD};
use crate::{Error, Result};

/// The files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `RUN_DIR/report.html`.
    pub html: PathBuf,
    /// Every PNG written under `RUN_DIR/plots/`, in the order the report shows them.
    pub plots: Vec<PathBuf>,
}

/// Reads the run folder `run_dir` and writes its plots and `report.html` into it.
///
/// Each file is written atomically. Fails with an error naming the file when
/// `metrics.json` is missing or is not a JSON object, when `history.csv` or
/// `predictions.csv` cannot be parsed, or when a confusion matrix is not a
/// square table of counts that matches its class names. A missing
/// `history.csv`, `predictions.csv` or `config.toml` only leaves its part of
/// the report out, with a note saying so.
pub fn write_report(run_dir: &Path) -> Result<ReportFiles> {
    let results = RunResults::read(run_dir)?;
    write_report_for(run_dir, &results, None)
}

/// [`write_report`] for a run whose results are at hand (a run being
/// written): `metrics.json` is not read, nor `history.csv` when `history`
/// (head names, records) is given; the predictions and config are.
pub fn write_report_for(
    run_dir: &Path,
    results: &RunResults,
    history: Option<(&[String], &[crate::train::EpochRecord])>,
) -> Result<ReportFiles> {
    let history = history.map(|(heads, records)| {
        let (header, rows) = crate::train::history_columns(heads, records);
        History::from_rows(header, &rows)
    });
    let run = RunFolder::read(run_dir, results, history)?;
    let plots_dir = run_dir.join("plots");
    let mut stems = HashSet::new();
    let mut written = Vec::new();
    let mut emit =
        |kind: &str, head: &str, title: String, draw: &dyn Fn(&str) -> plots::DrawResult<Vec<u8>>| {
            let stem = unique_stem(&mut stems, &format!("{kind}_{}", file_safe(head)));
            let path = plots_dir.join(format!("{stem}.png"));
            let png = draw(&title)
                .map_err(|e| Error::Invalid(format!("{}: drawing the plot failed: {e}", path.display())))?;
            write_atomic(&path, &png)?;
            written.push(path);
            Ok::<_, Error>(html::Figure { title, rel_path: format!("plots/{stem}.png"), png })
        };

    let best_epoch = Some(results.best_epoch as f64);
    let mut notes = run.notes.clone();
    notes.extend(results.warnings.iter().chain(&results.notes).cloned());
    let mut total = None;
    if let Some(h) = &run.history {
        match h.column("train_total") {
            Some(train) => {
                let draw =
                    |t: &str| plots::loss_png(t, &h.epochs, train, h.column("val_total"), best_epoch, true);
                total = Some(emit("loss", "total", "total loss per epoch".into(), &draw)?);
            }
            None => notes.push("history.csv has no train_total column: no total loss curve.".into()),
        }
    }

    let mut heads = Vec::new();
    for name in run.head_names() {
        let entry = results.heads.get(&name);
        let kind = entry.map(|e| e.kind.as_str()).filter(|k| !k.is_empty());
        let metrics = entry.map(|e| &e.metrics);
        let mut figures = Vec::new();

        if let Some(h) = &run.history {
            if let Some(train) = h.column(&format!("train_{name}")) {
                let val = h.column(&format!("val_{name}"));
                let draw = |t: &str| plots::loss_png(t, &h.epochs, train, val, best_epoch, false);
                figures.push(emit("loss", &name, format!("{name}: loss per epoch"), &draw)?);
            }
        }
        if let Some(cm) = metrics.map(|m| confusion(&run.metrics_path, &name, m)).transpose()?.flatten() {
            let draw = |t: &str| plots::confusion_png(t, &cm.classes, &cm.counts);
            figures.push(emit("confusion", &name, format!("{name}: confusion matrix"), &draw)?);
        }
        // Regression heads always get the plot (saying so when no test row is numeric);
        // heads of other kinds only when predictions.csv has numeric pairs for them.
        let (split_label, pairs) = match run.predictions.as_ref().and_then(|p| p.scored_pairs(&name)) {
            Some((label, pairs)) => (label, Some(pairs)),
            None => ("test", None),
        };
        let known = matches!(kind, Some("classification") | Some("regression"));
        if kind == Some("regression") || (!known && pairs.as_ref().is_some_and(|p| !p.is_empty())) {
            let pairs = pairs.unwrap_or_default();
            let scores = plots::parity_scores(&crate::metrics::regression(&pairs, None));
            let title = format!("{name}: predicted vs true ({split_label}, {scores})");
            let draw = |t: &str| plots::pred_vs_true_png(t, &pairs);
            figures.push(emit("pred_vs_true", &name, title, &draw)?);
        }
        heads.push(html::HeadView {
            name: name.clone(),
            kind: kind.map(str::to_owned),
            column: entry.map(|e| e.column.clone()).filter(|c| !c.is_empty()),
            error_rate: entry.and_then(|e| e.error_rate),
            metrics,
            figures,
        });
    }

    let cv = results.cross_validation.as_ref();
    let mut cv_figures = Vec::new();
    if let Some(cv) = cv {
        let folds: Vec<String> = cv.folds.iter().map(|f| format!("fold {}", f.fold)).collect();
        for (metric, label) in [("error_rate", "error rate"), ("mae", "MAE")] {
            let series: Vec<(String, Vec<Option<f64>>)> = cv
                .head_order
                .iter()
                .filter(|h| cv.heads.get(*h).is_some_and(|m| m.contains_key(metric)))
                .map(|h| {
                    let values = cv.folds.iter().map(|f| f.heads.get(h).and_then(|m| m.get(metric)).copied());
                    (h.clone(), values.collect())
                })
                .collect();
            if series.is_empty() {
                continue;
            }
            let title = format!("{label} of each fold");
            let draw = |t: &str| plots::categories_png(t, "fold", label, &folds, &series);
            cv_figures.push(emit("folds", metric, title, &draw)?);
        }
    }
    let page = html::render(&html::Page {
        results,
        choices: results.choices.as_ref(),
        cross_validation: cv.map(|cv| (cv, cv_figures.as_slice())),
        total: total.as_ref(),
        heads: &heads,
        config: run.config.as_deref(),
        notes: &notes,
    });
    let html_path = run_dir.join("report.html");
    write_atomic(&html_path, page.as_bytes())?;
    Ok(ReportFiles { html: html_path, plots: written })
}

/// Everything read from a run folder, beside its [`RunResults`].
struct RunFolder<'a> {
    metrics_path: PathBuf,
    results: &'a RunResults,
    history: Option<History>,
    predictions: Option<Predictions>,
    config: Option<String>,
    notes: Vec<String>,
}

impl<'a> RunFolder<'a> {
    fn read(dir: &Path, results: &'a RunResults, history: Option<History>) -> Result<Self> {
        let metrics_path = dir.join("metrics.json");
        let mut notes = Vec::new();
        let history = match history {
            Some(h) => Some(h),
            None => match optional_text(&dir.join("history.csv"))? {
                Some(t) => Some(History::parse(&dir.join("history.csv"), &t)?),
                None => {
                    notes.push("history.csv not found: no loss curves.".into());
                    None
                }
            },
        };
        let predictions = match optional_text(&dir.join("predictions.csv"))? {
            Some(t) => Some(Predictions::parse(&dir.join("predictions.csv"), &t)?),
            None => {
                notes.push("predictions.csv not found: no predicted-vs-true plots.".into());
                None
            }
        };
        let config = optional_text(&dir.join("config.toml"))?;
        if config.is_none() {
            notes.push("config.toml not found.".into());
        }
        Ok(RunFolder { metrics_path, results, history, predictions, config, notes })
    }

    /// Heads in model order (history.csv's columns), then any other head of metrics.json.
    fn head_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.history.as_ref().map(History::heads).unwrap_or_default();
        for name in self.results.heads.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// A file's text, `None` when it does not exist.
fn optional_text(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// `history.csv`: one numeric column per name; empty cells are NaN.
struct History {
    header: Vec<String>,
    epochs: Vec<f64>,
    /// Column-major values, in header order (the epoch column included).
    columns: Vec<Vec<f64>>,
}

impl History {
    /// From rows laid out by `header` (`None` cells become NaN).
    fn from_rows(header: Vec<String>, rows: &[Vec<Option<f64>>]) -> Self {
        let columns: Vec<Vec<f64>> = (0..header.len())
            .map(|i| rows.iter().map(|r| r.get(i).copied().flatten().unwrap_or(f64::NAN)).collect())
            .collect();
        let epochs = columns.first().cloned().unwrap_or_default();
        History { header, epochs, columns }
    }

    fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| Error::data(path, format!("header: {e}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.first().map(String::as_str) != Some("epoch") {
            return Err(Error::data(path, "line 1: the first column must be `epoch`"));
        }
        let mut columns = vec![Vec::new(); header.len()];
        for record in reader.records() {
            let record = record.map_err(|e| Error::data(path, e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            for (i, col) in columns.iter_mut().enumerate() {
                let cell = record.get(i).unwrap_or("");
                let value = if cell.is_empty() {
                    f64::NAN
                } else {
                    cell.parse::<f64>().map_err(|_| {
                        Error::data(
                            path,
                            format!("line {line}, column `{}`: {cell:?} is not a number", header[i]),
                        )
                    })?
                };
                col.push(value);
            }
        }
        let epochs = columns[0].clone();
        Ok(History { header, epochs, columns })
    }

    fn column(&self, name: &str) -> Option<&[f64]> {
        self.header.iter().position(|h| h == name).map(|i| self.columns[i].as_slice())
    }

    fn heads(&self) -> Vec<String> {
        self.header
            .iter()
            .filter_map(|h| h.strip_prefix("train_"))
            .filter(|h| *h != "total")
            .map(str::to_owned)
            .collect()
    }
}

/// `predictions.csv`, kept as text records.
struct Predictions {
    header: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl Predictions {
    fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| Error::data(path, format!("header: {e}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader
            .records()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::data(path, e.to_string()))?;
        Ok(Predictions { header, rows })
    }

    /// `(true, predicted)` of the scored rows where both cells are finite
    /// numbers, with what they are: the test rows (`split` = `test`), or,
    /// when there are none, the out-of-fold rows of a cross-validated run
    /// (`split` = [`OUT_OF_FOLD`]). `None` when the file
    /// has no `<head>_true` / `<head>_pred` columns.
    fn scored_pairs(&self, head: &str) -> Option<(&'static str, Vec<(f64, f64)>)> {
        let col = |name: String| self.header.iter().position(|h| *h == name);
        let split = col("split".into())?;
        let truth = col(format!("{head}_true"))?;
        let pred = col(format!("{head}_pred"))?;
        let cell = |r: &csv::StringRecord, i: usize| r.get(i).and_then(|c| c.trim().parse::<f64>().ok());
        let of = |part: &str| -> Vec<(f64, f64)> {
            self.rows
                .iter()
                .filter(|r| r.get(split).map(str::trim) == Some(part))
                .filter_map(|r| Some((cell(r, truth)?, cell(r, pred)?)))
                .filter(|(t, p)| t.is_finite() && p.is_finite())
                .collect()
        };
        let test = of("test");
        let has = |part: &str| self.rows.iter().any(|r| r.get(split).map(str::trim) == Some(part));
        if !has("test") && has(OUT_OF_FOLD) {
            return Some(("out of fold", of(OUT_OF_FOLD)));
        }
        Some(("test", test))
    }
}

/// A head's confusion matrix, checked.
struct Confusion {
    classes: Vec<String>,
    /// Rows = true class, columns = predicted class.
    counts: Vec<Vec<f64>>,
}

/// The confusion matrix (and class names) of one head, checked square and
/// matching its names; `None` when the head has none or it is empty.
fn confusion(path: &Path, head: &str, metrics: &HeadMetrics) -> Result<Option<Confusion>> {
    let field = |key: &str| format!("heads.{head}.metrics.{key}");
    let Some(m) = &metrics.classes else { return Ok(None) };
    let n = m.confusion.len();
    let mut counts = Vec::with_capacity(n);
    for (i, row) in m.confusion.iter().enumerate() {
        if row.len() != n {
            return Err(Error::data(
                path,
                format!("{}: row {i} must be an array of {n} counts", field("confusion_matrix")),
            ));
        }
        counts.push(row.iter().map(|&c| c as f64).collect());
    }
    let classes = m.labels.clone();
    if classes.len() != n {
        return Err(Error::data(
            path,
            format!("{}: {} names for a {n}x{n} confusion matrix", field("classes"), classes.len()),
        ));
    }
    Ok((n > 0).then_some(Confusion { classes, counts }))
}

/// A head name made safe for a file name: letters, digits, `-`, `_` and `.` are
/// kept, anything else becomes `_`.
fn file_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    s.trim_start_matches('.').to_owned()
}

/// `stem`, or `stem_2`, `stem_3`, ... if taken.
fn unique_stem(taken: &mut HashSet<String>, stem: &str) -> String {
    let mut candidate = stem.to_owned();
    let mut k = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{stem}_{k}");
        k += 1;
    }
    candidate
}
