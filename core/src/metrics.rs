//! Scores of predictions against labels, shared by the heads (and by heads
//! written outside this crate).
//!
//! Conventions, chosen so that every figure is a plain number or `null` in
//! `metrics.json`:
//!
//! - A ratio whose denominator is zero (precision of a class never predicted,
//!   recall of a class never present) is `0`, as scikit-learn's
//!   `zero_division=0`.
//! - The macro F1 averages the classes that occur in the labels or in the
//!   predictions; classes seen in neither are left out rather than counted as 0.
//! - R² is `null` when the labels are constant (their variance is zero, so R²
//!   is undefined) or when there are no labels.
//!
//! ```
//! use furcate_core::metrics::{classification, regression};
//!
//! let classes = vec!["a".to_string(), "b".to_string()];
//! let m = classification(&classes, &[("a", "a"), ("b", "a"), ("b", "b")]);
//! assert_eq!(m.n, 3);
//! assert_eq!(m.confusion, vec![vec![1, 0], vec![1, 1]]);
//! assert!((m.error_rate.unwrap() - 1.0 / 3.0).abs() < 1e-12);
//!
//! let r = regression(&[(1.0, 1.5), (3.0, 3.0)], Some(0.25));
//! assert_eq!(r.max_error, Some(0.5));
//! assert_eq!(r.within_tolerance, Some(0.5));
//! ```

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The class name.
    pub class: String,
    /// Correct predictions of the class over all predictions of it (0 when never predicted).
    pub precision: f64,
    /// Correct predictions of the class over its true occurrences (0 when absent).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of samples whose true label is this class.
    pub support: u64,
}

/// Scores of a discrete head.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassificationMetrics {
    /// Number of labelled samples scored.
    pub n: u64,
    /// Fraction of correct predictions (`null` when `n` is 0).
    pub accuracy: Option<f64>,
    /// Fraction of wrong predictions (`null` when `n` is 0).
    pub error_rate: Option<f64>,
    /// Row and column names of [`confusion`](Self::confusion): the known
    /// classes, then any label or prediction outside them, in order of appearance.
    #[serde(rename = "classes")]
    pub labels: Vec<String>,
    /// Counts: row = true class, column = predicted class.
    #[serde(rename = "confusion_matrix")]
    pub confusion: Vec<Vec<u64>>,
    /// One entry per name of [`labels`](Self::labels).
    pub per_class: Vec<ClassMetrics>,
    /// Mean F1 over the classes present in the labels or the predictions (`null` when `n` is 0).
    pub macro_f1: Option<f64>,
}

/// Scores of a continuous head, in the data's units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegressionMetrics {
    /// Number of labelled samples scored.
    pub n: u64,
    /// Mean absolute error (`null` when `n` is 0).
    pub mae: Option<f64>,
    /// Root mean squared error (`null` when `n` is 0).
    pub rmse: Option<f64>,
    /// Coefficient of determination, 1 - SS_res / SS_tot (`null` when the
    /// labels are constant or `n` is 0).
    pub r2: Option<f64>,
    /// Largest absolute error (`null` when `n` is 0).
    pub max_error: Option<f64>,
    /// Fraction of predictions within the tolerance, when one is given.
    pub within_tolerance: Option<f64>,
    /// Predictions clipped into the head's `bounds` (those lying exactly on
    /// a bound), when the head has bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipped: Option<u64>,
}

/// Scores `(true label, predicted label)` pairs against the known `classes`.
pub fn classification(classes: &[String], pairs: &[(&str, &str)]) -> ClassificationMetrics {
    let mut labels: Vec<String> = classes.to_vec();
    let mut index = |name: &str| match labels.iter().position(|l| l == name) {
        Some(i) => i,
        None => {
            labels.push(name.to_string());
            labels.len() - 1
        }
    };
    let coded: Vec<(usize, usize)> = pairs.iter().map(|(t, p)| (index(t), index(p))).collect();
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for &(t, p) in &coded {
        confusion[t][p] += 1;
    }
    let n = pairs.len() as u64;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut f1_sum = 0.0;
    let mut f1_count = 0usize;
    let per_class = labels
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let tp = confusion[i][i];
            let support: u64 = confusion[i].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 =
                if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            if support > 0 || predicted > 0 {
                f1_sum += f1;
                f1_count += 1;
            }
            ClassMetrics { class: class.clone(), precision, recall, f1, support }
        })
        .collect();
    let of_n = |x: u64| (n > 0).then(|| x as f64 / n as f64);
    ClassificationMetrics {
        n,
        accuracy: of_n(correct),
        error_rate: of_n(n - correct),
        labels,
        confusion,
        per_class,
        macro_f1: (f1_count > 0).then(|| f1_sum / f1_count as f64),
    }
}

/// Scores `(true value, predicted value)` pairs; with a `tolerance`, also the
/// fraction of predictions within it (`|error| <= tolerance`).
pub fn regression(pairs: &[(f64, f64)], tolerance: Option<f64>) -> RegressionMetrics {
    let n = pairs.len();
    if n == 0 {
        return RegressionMetrics {
            n: 0,
            mae: None,
            rmse: None,
            r2: None,
            max_error: None,
            within_tolerance: None,
            clipped: None,
        };
    }
    let nf = n as f64;
    let errors: Vec<f64> = pairs.iter().map(|(t, p)| (p - t).abs()).collect();
    let mean = pairs.iter().map(|(t, _)| t).sum::<f64>() / nf;
    let ss_res: f64 = errors.iter().map(|e| e * e).sum();
    let ss_tot: f64 = pairs.iter().map(|(t, _)| (t - mean) * (t - mean)).sum();
    RegressionMetrics {
        n: n as u64,
        mae: Some(errors.iter().sum::<f64>() / nf),
        rmse: Some((ss_res / nf).sqrt()),
        r2: (ss_tot > 0.0).then(|| 1.0 - ss_res / ss_tot),
        max_error: errors.iter().copied().reduce(f64::max),
        within_tolerance: tolerance.map(|tol| errors.iter().filter(|e| **e <= tol).count() as f64 / nf),
        clipped: None,
    }
}

/// Scores of a head over ordered bins (e.g. an ordinal head), beside its
/// [`ClassificationMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinMetrics {
    /// Mean absolute distance in bins between prediction and truth, over the
    /// labels the head knows (`null` when none).
    pub mean_abs_bin_error: Option<f64>,
    /// Labels outside the head's bins (counted wrong, left out of the bin error).
    pub unknown_labels: u64,
}

/// Scores of a head that predicts a value with its standard deviation,
/// beside its [`RegressionMetrics`]. `null` when no row is scored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalMetrics {
    /// Fraction of true values inside the predicted central 90 % interval.
    pub coverage_90: Option<f64>,
    /// Mean width of that interval, in the data's units.
    pub mean_interval_width_90: Option<f64>,
    /// Mean Gaussian negative log-likelihood of the true values.
    pub nll: Option<f64>,
}

/// Every figure of one head's score: what `metrics.json` writes under
/// `heads.<head>.metrics`, the report shows and `furcate experiment` reads.
///
/// A head fills the families it has (a discrete head [`classes`](Self::classes),
/// a continuous one [`values`](Self::values), ...); a head written outside
/// furcate may add named figures of its own in [`other`](Self::other). In
/// JSON the families' fields sit side by side in one object, as they always have.
///
/// ```
/// use furcate_core::metrics::{regression, HeadMetrics};
///
/// let m = HeadMetrics { values: Some(regression(&[(1.0, 1.5)], None)), ..HeadMetrics::default() };
/// let json = serde_json::to_value(&m)?;
/// assert_eq!(json["mae"], 0.5);
/// let back: HeadMetrics = serde_json::from_value(json)?;
/// assert_eq!(back, m);
/// assert_eq!(back.headline(), vec![("mae", 0.5), ("rmse", 0.5), ("max_error", 0.5)]);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadMetrics {
    /// A discrete head's accuracy, confusion matrix and per-class table.
    pub classes: Option<ClassificationMetrics>,
    /// A continuous head's errors.
    pub values: Option<RegressionMetrics>,
    /// An ordinal head's distance in bins.
    pub bins: Option<BinMetrics>,
    /// An uncertainty head's interval coverage.
    pub interval: Option<IntervalMetrics>,
    /// Further figures of heads written elsewhere (plugins), by name.
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl HeadMetrics {
    /// The figures a one-line summary shows (the printed results table, an
    /// experiment's columns), in this order, where the head has them: the one
    /// list to extend when a head family gains a headline figure.
    pub fn headline(&self) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        let mut push = |name: &'static str, v: Option<f64>| {
            if let Some(v) = v {
                out.push((name, v));
            }
        };
        if let Some(c) = &self.classes {
            push("accuracy", c.accuracy);
            push("macro_f1", c.macro_f1);
        }
        if let Some(b) = &self.bins {
            push("mean_abs_bin_error", b.mean_abs_bin_error);
        }
        if let Some(v) = &self.values {
            push("mae", v.mae);
            push("rmse", v.rmse);
            push("r2", v.r2);
            push("max_error", v.max_error);
        }
        if let Some(i) = &self.interval {
            push("coverage_90", i.coverage_90);
        }
        out
    }

    /// The mean absolute error, for heads that predict values.
    pub fn mae(&self) -> Option<f64> {
        self.values.as_ref().and_then(|v| v.mae)
    }

    /// Every figure that is a plain number, by its `metrics.json` name
    /// (counts included; tables and `null`s left out).
    pub fn numbers(&self) -> std::collections::BTreeMap<String, f64> {
        self.to_map().into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect()
    }

    /// The figures as one JSON object (the families' fields side by side).
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        let mut add = |v: Option<serde_json::Value>| {
            if let Some(serde_json::Value::Object(m)) = v {
                map.extend(m);
            }
        };
        add(self.classes.as_ref().and_then(|c| serde_json::to_value(c).ok()));
        add(self.values.as_ref().and_then(|c| serde_json::to_value(c).ok()));
        add(self.bins.as_ref().and_then(|c| serde_json::to_value(c).ok()));
        add(self.interval.as_ref().and_then(|c| serde_json::to_value(c).ok()));
        for (k, v) in &self.other {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        map
    }
}

impl Serialize for HeadMetrics {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HeadMetrics {
    /// Each family is read when its marker field is present (`confusion_matrix`,
    /// `mae`, `mean_abs_bin_error`, `coverage_90`); a present family that does
    /// not read is an error naming it; the keys no family claims go to `other`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let object = serde_json::Value::Object(map.clone());
        fn family<T: serde::de::DeserializeOwned>(
            map: &serde_json::Map<String, serde_json::Value>,
            object: &serde_json::Value,
            marker: &str,
            name: &str,
        ) -> Result<Option<T>, String> {
            if !map.contains_key(marker) {
                return Ok(None);
            }
            T::deserialize(object).map(Some).map_err(|e| format!("{name} figures: {e}"))
        }
        let classes: Option<ClassificationMetrics> =
            family(&map, &object, "confusion_matrix", "classification").map_err(D::Error::custom)?;
        let values: Option<RegressionMetrics> =
            family(&map, &object, "mae", "regression").map_err(D::Error::custom)?;
        let bins: Option<BinMetrics> =
            family(&map, &object, "mean_abs_bin_error", "bin").map_err(D::Error::custom)?;
        let interval: Option<IntervalMetrics> =
            family(&map, &object, "coverage_90", "interval").map_err(D::Error::custom)?;
        let mut m = HeadMetrics { classes, values, bins, interval, other: serde_json::Map::new() };
        let claimed = m.to_map();
        m.other = map.into_iter().filter(|(k, _)| !claimed.contains_key(k)).collect();
        Ok(m)
    }
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
