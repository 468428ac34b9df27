//! The run folder's files: `metrics.json`, `history.csv`, `predictions.csv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::aggregate;
use super::choose;
use super::evaluate::Evaluation;
use crate::config::RunConfig;
use crate::data::{split, Dataset};
use crate::head::Prediction;
use crate::model::MultiHeadModel;
use crate::train::{EpochRecord, TrainOutcome};
use crate::{fsutil, Error, Result};

pub(crate) fn partial_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    out.with_file_name(format!(".{name}.partial"))
}

pub(crate) fn data_sha256(data: &Dataset) -> Option<String> {
    data.source.is_file().then(|| fsutil::sha256_file(&data.source).ok()).flatten()
}

/// `metrics.json` of a run.
pub fn metrics_json(
    config: &RunConfig,
    model: &MultiHeadModel,
    eval: &Evaluation,
    outcome: &TrainOutcome,
    weights_sha256: Option<&str>,
    parts: &split::Split,
    choices: Option<&choose::Choices>,
) -> Result<Value> {
    let mut heads = serde_json::Map::new();
    for (i, (h, cfg)) in eval.heads.iter().zip(&config.heads).enumerate() {
        let mut head = json!({
            "type": h.kind,
            "column": cfg.column(),
            "error_rate": h.score.error_rate,
            "metrics": h.score.metrics,
        });
        if let Some(t) = eval.tiles.as_ref().and_then(|t| t.heads.get(i)) {
            head["tiles"] = json!({ "error_rate": t.score.error_rate, "metrics": t.score.metrics, "n": eval.tiles.as_ref().map(|t| t.n) });
        }
        heads.insert(h.name.clone(), head);
    }
    Ok(json!({
        "furcate_version": crate::VERSION,
        "extractor": serde_json::to_value(&config.extractor).map_err(|e| Error::Invalid(e.to_string()))?,
        "weights_sha256": weights_sha256,
        "best_epoch": outcome.best_epoch,
        "epochs_run": outcome.epochs_run,
        "stopped_early": outcome.stopped_early,
        "n_train": parts.train.len(),
        "n_val": parts.val.len(),
        "n_test": parts.test.len(),
        "cumulative_error": eval.cumulative_error,
        "exact_match_rate": eval.exact_match_rate,
        "exact_match_heads": eval.exact_match_heads,
        "loss_weighting": config.training.loss_weighting,
        "loss_weights": model
            .head_names()
            .into_iter()
            .zip(model.effective_weights())
            .map(|(name, w)| (name, json!(w)))
            .collect::<serde_json::Map<_, _>>(),
        "consistency": eval.consistency,
        "optimizer": config.training.optimizer,
        "standardise_features": config.training.standardise(),
        "choices": choices,
        "heads": heads,
    }))
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
