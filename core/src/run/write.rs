//! The run folder's files besides `metrics.json` ([`super::results`]):
//! `history.csv` and `predictions.csv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::aggregate;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::head::Prediction;
use crate::train::EpochRecord;
use crate::{fsutil, Result};

pub(crate) fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    out.with_file_name(format!(".{name}.partial"))
}

pub(crate) fn data_sha256(data: &Dataset) -> Option<String> {
    data.source.is_file().then(|| fsutil::sha256_file(&data.source).ok()).flatten()
}

/// `history.csv`: `epoch,train_total,val_total,train_<head>...,val_<head>...`.
pub fn history_csv(heads: &[String], history: &[EpochRecord]) -> String {
    let mut s = String::from("epoch,train_total,val_total");
    for h in heads {
        let _ = write!(s, ",train_{h}");
    }
    for h in heads {
        let _ = write!(s, ",val_{h}");
    }
    s.push('\n');
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.8}")).unwrap_or_default();
    for r in history {
        let _ = write!(s, "{},{:.8},{}", r.epoch, r.train_total, cell(r.val_total));
        for v in &r.train {
            let _ = write!(s, ",{v:.8}");
        }
        for i in 0..heads.len() {
            let _ = write!(s, ",{}", cell(r.val.as_ref().map(|v| v[i])));
        }
        s.push('\n');
    }
    s
}

/// `predictions.csv`: `file,split`, then per head the true label (when the
/// data has the column) and the prediction's cells (see
/// [`output::predictions_csv_with`]).
pub fn predictions_csv(
    config: &RunConfig,
    data: &Dataset,
    split_name: &str,
    predictions: &[Vec<Prediction>],
) -> Result<String> {
    aggregate::predictions_table(
        config,
        data,
        &vec![split_name.to_string(); data.len()],
        predictions,
        None,
        &[],
    )
}
