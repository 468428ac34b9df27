//! What a run says about its own trustworthiness: warnings about data that
//! make its scores mean little, and notes on the settings chosen for it
//! (the default validation part, whether early stopping is on).

use std::collections::BTreeMap;

use crate::config::{OptimizerKind, RunConfig};
use crate::data::split::Split;
use crate::data::Dataset;
use crate::head::cell;
use crate::Result;

/// Below this many test images, a run warns that its scores are coarse.
pub const MIN_TEST_IMAGES: usize = 10;

/// Below this many training images of a class, a run warns.
pub const MIN_CLASS_TRAINING_IMAGES: usize = 2;

/// Warnings about the split `parts` of `data`: a test part of fewer than
/// [`MIN_TEST_IMAGES`] images (skipped when `parts.test` is empty, as in
/// cross-validation), and per discrete head a class with fewer than
/// [`MIN_CLASS_TRAINING_IMAGES`] training images, or training rows of one
/// class only.
pub fn split_warnings(config: &RunConfig, data: &Dataset, parts: &Split) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let n_test = parts.test.len();
    if n_test > 0 && n_test < MIN_TEST_IMAGES {
        out.push(format!(
            "the test part has only {n_test} images: each error rate moves in steps of {:.1} %, so it \
             says little; use cross-validation (training.folds = 5 or --folds 5) or more images",
            100.0 / n_test as f64
        ));
    }
    for h in config.heads.iter().filter(|h| h.stratify()) {
        let labels = data.labels(h.column())?;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for l in labels.iter().filter_map(|l| cell(*l)) {
            counts.entry(l).or_default();
        }
        for &i in &parts.train {
            if let Some(l) = cell(labels[i]) {
                *counts.entry(l).or_default() += 1;
            }
        }
        let present: Vec<&str> = counts.iter().filter(|(_, n)| **n > 0).map(|(c, _)| *c).collect();
        if present.len() == 1 {
            out.push(format!(
                "head `{}`: the training rows hold one class only (`{}`): the head cannot learn to tell \
                 classes apart",
                h.name(),
                present[0]
            ));
        }
        for (class, n) in &counts {
            if *n < MIN_CLASS_TRAINING_IMAGES {
                out.push(format!(
                    "head `{}`: class `{class}` has {n} training image{} (fewer than \
                     {MIN_CLASS_TRAINING_IMAGES}): its scores mean little",
                    h.name(),
                    if *n == 1 { "" } else { "s" }
                ));
            }
        }
    }
    Ok(out)
}

/// Whether the run stops early, and why not: one line for the summary.
/// `n_val` is the size of the validation part, `why_val` the reason of a
/// default validation fraction.
pub fn early_stopping_note(config: &RunConfig, n_val: usize, why_val: Option<&str>) -> String {
    let t = &config.training;
    let val = why_val.map(|w| format!(" ({w})")).unwrap_or_default();
    if t.optimizer == OptimizerKind::Lbfgs {
        return format!(
            "early stopping: off with lbfgs (each head is solved to its optimum; the weight decay is the \
             regulariser); {n_val} validation rows{val}"
        );
    }
    match (n_val, t.patience) {
        (0, _) => format!(
            "early stopping: off, there is no validation part{val}; all {} epochs run and the epoch with \
             the lowest training loss is kept",
            t.epochs
        ),
        (_, None) => format!(
            "early stopping: off, training.patience is not set; all {} epochs run and the epoch with the \
             lowest validation loss ({n_val} rows{val}) is kept",
            t.epochs
        ),
        (_, Some(p)) => format!(
            "early stopping: on, after {p} epochs without a lower validation loss ({n_val} rows{val}); the \
             best epoch is kept"
        ),
    }
}
