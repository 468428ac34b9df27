//! Stratified k-fold cross-validation of a run (`[training] folds = K`, or
//! `furcate train --folds K`).
//!
//! The images are dealt to K folds, stratified on the discrete heads'
//! labels ([`split::folds`], deterministic for `training.seed`). Each fold
//! is predicted by a model trained exactly as a run trains (its own
//! validation part, choices and weight decay) on the other K - 1 folds; the
//! feature cache makes this cost only training. The run folder then holds:
//!
//! - `folds.csv`: per fold and head, every scalar metric (then the mean and
//!   the sample standard deviation over the folds);
//! - `metrics.json`: `cross_validation` ([`CvSummary`]: per head and
//!   metric the mean and standard deviation over folds, and every fold's
//!   scores); its `heads` are the scores of the pooled out-of-fold
//!   predictions (one confusion matrix over every image);
//! - `predictions.csv`: the out-of-fold prediction of every labelled image
//!   (`split` = [`OUT_OF_FOLD`], and its `fold`).
//!
//! The checkpoint is a final model trained on every labelled image (less
//! its validation part, when it has one), so `predict` uses all the data.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::config::{LoadedConfig, RunConfig};
use crate::data::{split, Dataset};
use crate::extractor::taps::TapLayout;
use crate::extractor::FeatureExtractor;
use crate::head::Prediction;
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::{Error, Result};

pub use crate::results::folds::{CvSummary, FoldResult, MeanStd, FOLDS_CSV, OUT_OF_FOLD};

use super::assemble::select_rows;
use super::evaluate::{evaluate, predict_features, Evaluation};
use super::fit::fit_rows;
use super::output::{predictions_csv_with, ExtraColumn};
use super::parts::validation_split;
use super::parts::FitData;

/// A finished cross-validation, before the final model.
#[derive(Debug)]
pub struct CrossValidation {
    /// The summary for `metrics.json`.
    pub summary: CvSummary,
    /// Per head, the out-of-fold prediction of every image (data order).
    pub predictions: Vec<Vec<Prediction>>,
    /// Warnings (a fold with a class missing from its training part, ...).
    pub warnings: Vec<String>,
}

/// Every scalar metric of each head of `eval` (the error rate included).
fn scalars(eval: &Evaluation) -> BTreeMap<String, BTreeMap<String, f64>> {
    eval.heads
        .iter()
        .map(|h| {
            let mut m = h.score.metrics.numbers();
            if let Some(e) = h.score.error_rate {
                m.insert("error_rate".into(), e);
            }
            (h.name.clone(), m)
        })
        .collect()
}

/// Cross-validates `cfg` on every row of `data` in `k` stratified folds
/// (see the module docs). `features` are the rows' raw features.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    data: &Dataset,
    features: &Tensor,
    layout: &TapLayout,
    strata: &[String],
    k: usize,
    progress: &mut dyn Progress,
) -> Result<CrossValidation> {
    let c = &cfg.config;
    let t = &c.training;
    cfg.check_folds(data.len())?;
    let folds = split::folds(strata, k, t.seed);
    let mut fold_of = vec![0usize; data.len()];
    for (f, rows) in folds.iter().enumerate() {
        for &r in rows {
            fold_of[r] = f + 1;
        }
        tracing::info!(
            "fold {}/{k}: {} images ({})",
            f + 1,
            rows.len(),
            rows.iter().map(|&r| data.names[r].as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut predictions: Vec<Vec<Option<Prediction>>> = vec![vec![None; data.len()]; c.heads.len()];
    let mut results = Vec::new();
    let mut warnings = Vec::new();
    for (f, held) in folds.iter().enumerate() {
        let rest: Vec<usize> = (0..data.len()).filter(|i| fold_of[*i] != f + 1).collect();
        let sub = data.subset(&rest);
        let sub_features = select_rows(features, &rest);
        let sub_strata: Vec<String> = rest.iter().map(|&i| strata[i].clone()).collect();
        let all: Vec<usize> = (0..rest.len()).collect();
        let (train, val, _) = validation_split(t, &sub_strata, &all);
        let parts = split::Split { train, val, test: Vec::new() };
        for w in super::warnings::split_warnings(c, &sub, &parts)? {
            let w = format!("fold {}: {w}", f + 1);
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let rows = FitData {
            data: &sub,
            features: &sub_features,
            layout,
            strata: &sub_strata,
            groups: None,
            base: None,
            scale_rows: None,
        };
        let fitted = fit_rows(cfg, extractor, &rows, &parts, &mut crate::train::NoCheckpoints, progress)
            .map_err(|e| Error::Training(format!("fold {}/{k}: {e}", f + 1)))?;
        let held_set = data.subset(held);
        let preds = predict_features(&fitted.model, &fitted.rows(features, held))?;
        let eval = evaluate(c, &fitted.model, &preds, &held_set)?;
        for (h, p) in preds.into_iter().enumerate() {
            for (j, p) in p.into_iter().enumerate() {
                predictions[h][held[j]] = Some(p);
            }
        }
        results.push(FoldResult {
            fold: f + 1,
            n_train: parts.train.len(),
            n_val: parts.val.len(),
            n_test: held.len(),
            best_epoch: fitted.outcome.best_epoch,
            heads: scalars(&eval),
            cumulative_error: eval.cumulative_error,
            exact_match_rate: eval.exact_match_rate,
        });
    }
    let predictions = predictions
        .into_iter()
        .map(|p| p.into_iter().collect::<Option<Vec<_>>>())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::Invalid("cross-validation left an image without a prediction".into()))?;
    let head_order: Vec<String> = c.heads.iter().map(|h| h.name().to_string()).collect();
    let mut heads = BTreeMap::new();
    for name in &head_order {
        let mut metrics: Vec<String> = Vec::new();
        for r in &results {
            for m in r.heads.get(name).into_iter().flat_map(|m| m.keys()) {
                if !metrics.contains(m) {
                    metrics.push(m.clone());
                }
            }
        }
        let per: BTreeMap<String, MeanStd> = metrics
            .into_iter()
            .filter_map(|m| {
                let v: Vec<f64> =
                    results.iter().filter_map(|r| r.heads.get(name)?.get(&m).copied()).collect();
                MeanStd::of(&v).map(|s| (m, s))
            })
            .collect();
        heads.insert(name.clone(), per);
    }
    let over = |f: &dyn Fn(&FoldResult) -> Option<f64>| {
        MeanStd::of(&results.iter().filter_map(f).collect::<Vec<_>>())
    };
    let summary = CvSummary {
        k,
        seed: t.seed,
        head_order,
        heads,
        cumulative_error: over(&|r| r.cumulative_error),
        exact_match_rate: over(&|r| r.exact_match_rate),
        folds: results,
        fold_of,
        final_model: String::new(),
    };
    Ok(CrossValidation { summary, predictions, warnings })
}

impl CrossValidation {
    /// Records (and returns) what the final model was trained on.
    pub fn final_model_note(&mut self, n_train: usize, n_val: usize) -> String {
        let val = if n_val > 0 { format!(", validating on {n_val} more") } else { String::new() };
        self.summary.final_model = format!(
            "cross-validated in {} folds; the scores are out-of-fold; the saved model (checkpoint/, used by \
             eval and predict) was trained on all the labelled images: {n_train} training images{val}",
            self.summary.k
        );
        self.summary.final_model.clone()
    }

    /// Scores of the pooled out-of-fold predictions against `data`'s labels,
    /// with the heads of `model` (the final model, which knows every class).
    pub fn pooled(&self, config: &RunConfig, model: &MultiHeadModel, data: &Dataset) -> Result<Evaluation> {
        evaluate(config, model, &self.predictions, data)
    }

    /// `predictions.csv`: every image's out-of-fold prediction and its fold.
    pub fn predictions_csv(&self, config: &RunConfig, data: &Dataset) -> Result<String> {
        let split = vec![OUT_OF_FOLD.to_string(); data.len()];
        let fold = ExtraColumn {
            name: "fold".into(),
            cells: self.summary.fold_of.iter().map(ToString::to_string).collect(),
        };
        predictions_csv_with(config, data, &split, &self.predictions, &[fold])
    }
}
