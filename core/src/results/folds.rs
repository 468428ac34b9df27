//! A cross-validated run's scores ([`crate::run::folds`] makes them):
//! per fold, and per head and metric the mean and standard deviation over
//! the folds; `metrics.json`'s `cross_validation` and `folds.csv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The `split` value of an out-of-fold prediction in `predictions.csv`.
pub const OUT_OF_FOLD: &str = "out_of_fold";

/// The per-fold table in the run folder.
pub const FOLDS_CSV: &str = "folds.csv";

/// A mean and sample standard deviation over folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (0 for one value).
    pub std: f64,
}

impl MeanStd {
    /// Of the finite `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<MeanStd> {
        crate::metrics::mean_std(values).map(|(mean, std)| MeanStd { mean, std })
    }
}

/// One fold's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// 1-based.
    pub fold: usize,
    /// Images the fold's model trained on.
    pub n_train: usize,
    /// Its validation images.
    pub n_val: usize,
    /// Images of the fold (scored).
    pub n_test: usize,
    /// The fold model's best epoch.
    pub best_epoch: usize,
    /// Per head, every scalar metric on the fold (`error_rate`, `mae`, ...).
    pub heads: BTreeMap<String, BTreeMap<String, f64>>,
    /// Sum of the discrete heads' error rates.
    pub cumulative_error: Option<f64>,
    /// Exact-match rate on the fold.
    pub exact_match_rate: Option<f64>,
}

/// `metrics.json`'s `cross_validation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    /// K.
    pub k: usize,
    /// The seed the folds were dealt with.
    pub seed: u64,
    /// Heads in model order.
    pub head_order: Vec<String>,
    /// Per head and metric: mean and standard deviation over the folds.
    pub heads: BTreeMap<String, BTreeMap<String, MeanStd>>,
    /// Of the cumulative error.
    pub cumulative_error: Option<MeanStd>,
    /// Of the exact-match rate.
    pub exact_match_rate: Option<MeanStd>,
    /// Every fold.
    pub folds: Vec<FoldResult>,
    /// The fold (1-based) of every image, in data order.
    pub fold_of: Vec<usize>,
    /// What the checkpoint was trained on.
    pub final_model: String,
}

impl CvSummary {
    /// The metric columns of `folds.csv` and the printed table: `error_rate`
    /// first, then the others by name.
    fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for m in self.heads.values().flat_map(|m| m.keys()) {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
        names.sort_by_key(|n| (n != "error_rate", n.clone()));
        names
    }

    /// `folds.csv`: `fold,head,n_train,n_val,n_test,<metric>...`, one row
    /// per fold and head, then rows `mean` and `std` per head.
    pub fn folds_csv(&self) -> Result<String> {
        let metrics = self.metric_names();
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| Error::Invalid(e.to_string());
        let mut header: Vec<String> =
            ["fold", "head", "n_train", "n_val", "n_test"].map(String::from).to_vec();
        header.extend(metrics.iter().cloned());
        w.write_record(&header).map_err(err)?;
        let num = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        for f in &self.folds {
            for head in &self.head_order {
                let m = f.heads.get(head);
                let mut row = vec![
                    f.fold.to_string(),
                    head.clone(),
                    f.n_train.to_string(),
                    f.n_val.to_string(),
                    f.n_test.to_string(),
                ];
                row.extend(metrics.iter().map(|k| num(m.and_then(|m| m.get(k)).copied())));
                w.write_record(&row).map_err(err)?;
            }
        }
        for (label, pick) in
            [("mean", (|s: &MeanStd| s.mean) as fn(&MeanStd) -> f64), ("std", |s: &MeanStd| s.std)]
        {
            for head in &self.head_order {
                let m = self.heads.get(head);
                let mut row =
                    vec![label.to_string(), head.clone(), String::new(), String::new(), String::new()];
                row.extend(metrics.iter().map(|k| num(m.and_then(|m| m.get(k)).map(pick))));
                w.write_record(&row).map_err(err)?;
            }
        }
        let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The printed table: per head, the headline metrics as mean ± std over the folds.
    pub fn format_table(&self) -> String {
        let mut s = format!("cross-validation, {} folds (mean ± std over folds):\n", self.k);
        for head in &self.head_order {
            let Some(m) = self.heads.get(head) else { continue };
            let shown: Vec<String> = ["error_rate", "mae", "rmse", "r2", "macro_f1"]
                .iter()
                .filter_map(|k| {
                    let v = m.get(*k)?;
                    Some(if *k == "error_rate" {
                        format!("error rate {:.4} ± {:.4} %", 100.0 * v.mean, 100.0 * v.std)
                    } else {
                        format!("{k} {:.4} ± {:.4}", v.mean, v.std)
                    })
                })
                .collect();
            let _ = writeln!(s, "  {head:<24} {}", shown.join(", "));
        }
        if let Some(c) = self.cumulative_error {
            let _ = writeln!(s, "  cumulative error {:.4} ± {:.4} %", 100.0 * c.mean, 100.0 * c.std);
        }
        s
    }
}
