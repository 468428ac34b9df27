//! The run folder's files besides `metrics.json` ([`super::results`]):
//! `history.csv` and `predictions.csv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::aggregate;
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::head::Prediction;
use crate::train::EpochRecord;

pub use crate::train::history_columns;
use crate::{fsutil, Result};

pub(crate) fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    out.with_file_name(format!(".{name}.partial"))
}

pub(crate) fn data_sha256(data: &Dataset) -> Option<String> {
    data.source.is_file().then(|| fsutil::sha256_file(&data.source).ok()).flatten()
}

/// `history.csv` ([`history_columns`]; the epoch as an integer, losses with 8 decimals).
pub fn history_csv(heads: &[String], history: &[EpochRecord]) -> String {
    let (header, rows) = history_columns(heads, history);
    let mut s = header.join(",");
    s.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(v) if i == 0 => format!("{v:.0}"),
                Some(v) => format!("{v:.8}"),
                None => String::new(),
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join(","));
    }
    s
}

/// `predictions.csv`: `file,split`, then per head the true label (when the
/// data has the column) and the prediction's cells (see
/// [`super::output::predictions_csv_with`]).
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
