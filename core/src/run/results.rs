//! Making a run's [`RunResults`] (the typed `metrics.json`, defined in
//! [`crate::results`]) from its evaluation and how it was trained.

use std::collections::BTreeMap;

use super::choose::Choices;
use super::evaluate::Evaluation;
use crate::config::RunConfig;
use crate::data::split;
use crate::model::MultiHeadModel;
use crate::results::{HeadResult, RunResults, TileResult};
use crate::train::TrainOutcome;
use crate::{Error, Result};

/// What [`RunResults::new`] is made from besides the evaluation.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    /// The run's configuration.
    pub config: &'a RunConfig,
    /// The trained model (its loss weights).
    pub model: &'a MultiHeadModel,
    /// How training went.
    pub outcome: &'a TrainOutcome,
    /// SHA-256 of the extractor's weights.
    pub weights_sha256: Option<&'a str>,
    /// The image split.
    pub parts: &'a split::Split,
    /// The choices made.
    pub choices: Option<&'a Choices>,
}

impl RunResults {
    /// The results of a run scored by `eval`.
    pub fn new(facts: RunFacts, eval: &Evaluation) -> Result<RunResults> {
        let RunFacts { config, model, outcome, weights_sha256, parts, choices } = facts;
        let mut heads = BTreeMap::new();
        for (i, (h, cfg)) in eval.heads.iter().zip(&config.heads).enumerate() {
            let tiles = eval.tiles.as_ref().and_then(|t| Some((t.heads.get(i)?, t.n))).map(|(t, n)| {
                TileResult { error_rate: t.score.error_rate, metrics: t.score.metrics.clone(), n: Some(n) }
            });
            heads.insert(
                h.name.clone(),
                HeadResult {
                    kind: h.kind.clone(),
                    column: cfg.column().to_string(),
                    error_rate: h.score.error_rate,
                    metrics: h.score.metrics.clone(),
                    tiles,
                },
            );
        }
        Ok(RunResults {
            furcate_version: crate::VERSION.to_string(),
            extractor: serde_json::to_value(&config.extractor).map_err(|e| Error::Invalid(e.to_string()))?,
            weights_sha256: weights_sha256.map(str::to_string),
            best_epoch: outcome.best_epoch,
            epochs_run: outcome.epochs_run,
            stopped_early: outcome.stopped_early,
            n_train: parts.train.len(),
            n_val: parts.val.len(),
            n_test: parts.test.len(),
            cumulative_error: eval.cumulative_error,
            exact_match_rate: eval.exact_match_rate,
            exact_match_heads: eval.exact_match_heads.clone(),
            loss_weighting: config.training.loss_weighting,
            loss_weights: model.head_names().into_iter().zip(model.effective_weights()).collect(),
            consistency: eval.consistency.clone(),
            optimizer: config.training.optimizer,
            standardise_features: config.training.standardise(),
            choices: choices.cloned(),
            heads,
            data: None,
            warnings: Vec::new(),
            notes: Vec::new(),
            n_out_of_fold: None,
            cross_validation: None,
        })
    }
}
