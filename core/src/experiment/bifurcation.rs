//! The bifurcation map of a sweep over taps: per head, its error against
//! the taps it read (where in the network the property lives), as a
//! `results.md` section and a plot.

use std::fmt::Write as _;

use super::measure::{head_columns, short, Measure};
use super::PointResult;
use crate::metrics::mean_std;
use crate::{Error, Result};

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
pub(super) fn bifurcation_markdown(results: &[PointResult]) -> String {
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
pub(super) fn bifurcation_plots(results: &[PointResult]) -> Result<Vec<(String, Vec<u8>)>> {
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
