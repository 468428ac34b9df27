//! What the summary tables report per head ([`Measure`]), and the number
//! formats they share.

use super::{HeadResult, PointResult};

/// A number the summary reports for a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
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
    pub(super) const ALL: [Measure; 4] = [Measure::Error, Measure::Mae, Measure::Rounded, Measure::Coverage];

    pub(super) fn of(self, h: &HeadResult) -> Option<f64> {
        match self {
            Measure::Error => h.error_rate,
            Measure::Mae => h.mae,
            Measure::Rounded => h.rounded_error,
            Measure::Coverage => h.coverage_90,
        }
    }

    /// The measure's `results.csv` column suffix and `results.md` title.
    pub(super) fn names(self) -> (&'static str, &'static str) {
        match self {
            Measure::Error => ("error_rate", "error"),
            Measure::Mae => ("mae", "MAE"),
            Measure::Rounded => ("rounded_error_rate", "rounded to class: error"),
            Measure::Coverage => ("coverage_90", "90 % interval coverage"),
        }
    }

    /// The `results.csv` column of head `name`.
    pub(super) fn column(self, name: &str) -> String {
        format!("{name}_{}", self.names().0)
    }

    /// The `results.md` column of head `name`.
    pub(super) fn title(self, name: &str) -> String {
        format!("{name} {}", self.names().1)
    }

    /// Mean ± std over seeds as `results.md` shows it (an MAE to at least 5
    /// decimals and 3 significant digits of the mean).
    pub(super) fn text(self, v: Option<(f64, f64)>) -> String {
        match self {
            Measure::Mae => v
                .map(|(m, sd)| {
                    let d = mae_decimals(m);
                    format!("{m:.d$} ± {sd:.d$}")
                })
                .unwrap_or_else(|| "-".into()),
            _ => percent(v),
        }
    }
}

/// Head names over all results, in first-seen order, with the measures any
/// point reports for them (a discrete head's error rate; a value head's MAE,
/// and its rounded error and interval coverage where it has them).
pub(super) fn head_columns(results: &[PointResult]) -> Vec<(String, Vec<Measure>)> {
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

/// A `results.csv` cell: 6 decimals, more (up to 12) where that keeps 4
/// significant digits of a small value (an MAE of a few millionths).
pub(super) fn cell(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| {
            let d = decimals(v, 4, 6, 12);
            format!("{v:.d$}")
        })
        .unwrap_or_default()
}

/// An MAE as `results.md` shows a mean: to at least 5 decimals and 3
/// significant digits (the progress line of `furcate experiment` uses it too).
///
/// ```
/// assert_eq!(furcate_core::experiment::format_mae(0.0000043), "0.00000430");
/// assert_eq!(furcate_core::experiment::format_mae(0.0123), "0.01230");
/// ```
pub fn format_mae(m: f64) -> String {
    let d = mae_decimals(m);
    format!("{m:.d$}")
}

/// The decimals of an MAE: at least 5, and 3 significant digits (at most 9).
fn mae_decimals(m: f64) -> usize {
    decimals(m, 3, 5, 9)
}

/// The decimals that show `digits` significant digits of `v`, within
/// `min..=max` (`min` for zero).
fn decimals(v: f64, digits: i64, min: usize, max: usize) -> usize {
    if v == 0.0 {
        return min;
    }
    (digits - 1 - v.abs().log10().floor() as i64).clamp(min as i64, max as i64) as usize
}

/// `0.1` -> `0.1`, `1 - 0.9` -> `0.1`: the shortest form to 4 decimals, as the thesis writes splits.
pub(super) fn short(v: f64) -> String {
    format!("{}", (v * 1e4).round() / 1e4)
}

pub(super) fn percent(v: Option<(f64, f64)>) -> String {
    v.map(|(m, s)| format!("{:.4} ± {:.4} %", 100.0 * m, 100.0 * s)).unwrap_or_else(|| "-".into())
}

/// Whether the results come from a sweep over `taps`.
pub(super) fn has_taps(results: &[PointResult]) -> bool {
    results.iter().any(|r| r.point.has_taps())
}
