//! The sweep's summary: `results.csv`, `results.md` and one plot per head
//! of its error against the training fraction.

use std::fmt::Write as _;

use super::bifurcation::bifurcation_markdown;
use super::measure::{cell, has_taps, head_columns, percent, short, Measure};
use super::{FoldScores, HeadResult, PointResult};
use crate::metrics::mean_std;
use crate::{Error, Result};

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
pub(super) fn values(
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

/// Results grouped by [`Point::group`] (in first-seen order), each group's
/// points grouped by test fraction (ascending).
#[allow(clippy::type_complexity)]
pub(super) fn grouped(results: &[PointResult]) -> Vec<(String, Vec<(f64, Vec<&PointResult>)>)> {
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
pub(super) fn error_plots(results: &[PointResult]) -> Result<Vec<(String, Vec<u8>)>> {
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
