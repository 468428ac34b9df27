//! How unsure a head is about an image, on one scale for every head: 0
//! (certain) to 1 (knows nothing).
//!
//! - A **class head** with class probabilities `p` (sorted, `p1 >= p2 >= ...`):
//!   the *margin* uncertainty `1 - (p1 - p2)`, or the *entropy*
//!   `-Σ p log p / log K` (normalised by its largest value, `K` classes).
//!   A head that tells only its top class's probability gives `1 - p1`.
//! - A **value head** that gives a spread (a predicted standard deviation,
//!   or the spread of its tiles' values in a tiled run): that spread over
//!   the spread of its training labels, at most 1 (a spread as wide as the
//!   labels' own: the head knows nothing about the image).
//!
//! Heads are combined by the mean of the heads that give an uncertainty.

use serde::{Deserialize, Serialize};

/// Which uncertainty of a class head's probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// `1 - (p1 - p2)`: how close the two likeliest classes are.
    Margin,
    /// Entropy over `log K`: how spread the probabilities are over every class.
    Entropy,
}

/// The margin uncertainty `1 - (p1 - p2)` of one image's class
/// probabilities; 0 with fewer than two classes.
///
/// ```
/// use furcate_core::suggest::uncertainty::margin;
/// assert!((margin(&[0.5, 0.3, 0.2]) - 0.8).abs() < 1e-12);
/// assert_eq!(margin(&[1.0, 0.0]), 0.0);
/// assert_eq!(margin(&[0.5, 0.5]), 1.0);
/// ```
pub fn margin(p: &[f64]) -> f64 {
    let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for &v in p {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    if p.len() < 2 {
        return 0.0;
    }
    (1.0 - (first - second)).clamp(0.0, 1.0)
}

/// The entropy of one image's class probabilities over `log K`: 0 when one
/// class has all of it, 1 when every class is as likely; 0 with fewer than
/// two classes.
///
/// ```
/// use furcate_core::suggest::uncertainty::entropy;
/// assert!((entropy(&[0.25; 4]) - 1.0).abs() < 1e-12);
/// assert_eq!(entropy(&[1.0, 0.0, 0.0]), 0.0);
/// ```
pub fn entropy(p: &[f64]) -> f64 {
    if p.len() < 2 {
        return 0.0;
    }
    let h: f64 = p.iter().filter(|&&v| v > 0.0).map(|&v| -v * v.ln()).sum();
    (h / (p.len() as f64).ln()).clamp(0.0, 1.0)
}

impl Measure {
    /// This measure of one image's class probabilities.
    pub fn of(self, p: &[f64]) -> f64 {
        match self {
            Measure::Margin => margin(p),
            Measure::Entropy => entropy(p),
        }
    }
}

/// What a head says about its uncertainty on each candidate image.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Every class's probability, per image.
    Probabilities {
        /// The class names, in the probabilities' order.
        classes: Vec<String>,
        /// Per image, one probability per class.
        rows: Vec<Vec<f64>>,
    },
    /// An uncertainty already on the 0..1 scale, per image, and what it is
    /// (for the reason a suggestion gives).
    Scaled {
        /// Per image, in `[0, 1]`.
        values: Vec<f64>,
        /// What the values are, e.g. `predicted std / label std`.
        what: String,
    },
}

/// Per image, every class head's probabilities less the one-hot of its
/// likeliest class, side by side (`[N, R]` flattened row by row, `R` the
/// classes of those heads): the gradient of each head's cross-entropy at
/// its own prediction with respect to its logits, what
/// [`super::diversity::gradient_seeding`] embeds. `None` when no head gives
/// probabilities.
///
/// ```
/// use furcate_core::suggest::uncertainty::{residuals, HeadSignal, Signal};
///
/// let rows = vec![vec![0.7, 0.3], vec![0.2, 0.8]];
/// let head = HeadSignal { name: "phase".into(), signal: Some(Signal::Probabilities { classes: vec![], rows }) };
/// let (r, width) = residuals(&[head], 2).unwrap();
/// assert_eq!(width, 2);
/// let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
/// assert!(close(r[0], -0.3) && close(r[1], 0.3) && close(r[2], 0.2) && close(r[3], -0.2));
/// ```
pub fn residuals(heads: &[HeadSignal], n: usize) -> Option<(Vec<f64>, usize)> {
    let tables: Vec<&Vec<Vec<f64>>> = heads
        .iter()
        .filter_map(|h| match h.signal.as_ref()? {
            Signal::Probabilities { rows, .. } if rows.len() == n => Some(rows),
            _ => None,
        })
        .collect();
    if tables.is_empty() {
        return None;
    }
    let widths: Vec<usize> = tables.iter().map(|t| t.iter().map(Vec::len).max().unwrap_or(0)).collect();
    let width: usize = widths.iter().sum();
    let mut out = Vec::with_capacity(n * width);
    for i in 0..n {
        for (table, &w) in tables.iter().zip(&widths) {
            let p = &table[i];
            let top = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k);
            out.extend(
                (0..w).map(|k| p.get(k).copied().unwrap_or(0.0) - if Some(k) == top { 1.0 } else { 0.0 }),
            );
        }
    }
    Some((out, width))
}

/// One head's signal, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSignal {
    /// The head.
    pub name: String,
    /// Its uncertainty per image; `None`: the head gives none (a value head
    /// without a spread) and is left out of the ranking.
    pub signal: Option<Signal>,
}

impl HeadSignal {
    /// Per image, this head's uncertainty under `measure` (`None` without a signal).
    pub fn uncertainties(&self, measure: Measure) -> Option<Vec<f64>> {
        match self.signal.as_ref()? {
            Signal::Probabilities { rows, .. } => Some(rows.iter().map(|p| measure.of(p)).collect()),
            Signal::Scaled { values, .. } => Some(values.iter().map(|v| v.clamp(0.0, 1.0)).collect()),
        }
    }

    /// A few words on how unsure the head is about image `i`: its two likeliest
    /// classes with their probabilities, or its scaled spread.
    pub fn describe(&self, i: usize) -> Option<String> {
        match self.signal.as_ref()? {
            Signal::Probabilities { classes, rows } => {
                let p = rows.get(i)?;
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let name = |k: usize| classes.get(k).map(String::as_str).unwrap_or("?");
                Some(match order.as_slice() {
                    [a, b, ..] => {
                        format!("{} {} {:.2} vs {} {:.2}", self.name, name(*a), p[*a], name(*b), p[*b])
                    }
                    [a] => format!("{} {} {:.2}", self.name, name(*a), p[*a]),
                    [] => return None,
                })
            }
            Signal::Scaled { values, what } => Some(format!("{} {what} {:.2}", self.name, values.get(i)?)),
        }
    }
}

/// The heads' uncertainties of every image ([`combine`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Combined {
    /// Per image, the mean over the heads that give an uncertainty.
    pub mean: Vec<f64>,
    /// Per head, per image, its own (`None` for a head without a signal).
    pub per_head: Vec<Option<Vec<f64>>>,
}

/// Per image, the mean uncertainty over the heads that give one (`None` when
/// no head does), with each head's own.
///
/// ```
/// use furcate_core::suggest::uncertainty::{combine, HeadSignal, Measure, Signal};
/// let a = HeadSignal {
///     name: "a".into(),
///     signal: Some(Signal::Probabilities { classes: vec!["x".into(), "y".into()], rows: vec![vec![0.5, 0.5], vec![1.0, 0.0]] }),
/// };
/// let b = HeadSignal { name: "b".into(), signal: None };
/// let combined = combine(&[a, b], Measure::Margin, 2).unwrap();
/// assert_eq!(combined.mean, vec![1.0, 0.0]);
/// assert_eq!(combined.per_head[1], None);
/// ```
pub fn combine(heads: &[HeadSignal], measure: Measure, n: usize) -> Option<Combined> {
    let per_head: Vec<Option<Vec<f64>>> = heads.iter().map(|h| h.uncertainties(measure)).collect();
    let given: Vec<&Vec<f64>> = per_head.iter().flatten().collect();
    if given.is_empty() {
        return None;
    }
    let mean = (0..n)
        .map(|i| given.iter().map(|u| u.get(i).copied().unwrap_or(0.0)).sum::<f64>() / given.len() as f64)
        .collect();
    Some(Combined { mean, per_head })
}
