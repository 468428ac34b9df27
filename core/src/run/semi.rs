//! `[training] semi_supervised`: class heads that also learn from unlabelled
//! images.
//!
//! With `propagation`, the heads are fitted on the labelled rows first
//! ([`super::fit::fit_rows`]). Then, per class head, its outputs (logits) on
//! the labelled and the unlabelled rows, standardised on the labelled ones,
//! are the points of a k-nearest-neighbour graph over which the labels
//! spread ([`crate::train::propagate`]): a supervised head's logits are the
//! feature space in which its classes separate, so the graph joins images
//! that the head already places near each other, and the unlabelled images
//! between them carry a label across. Each unlabelled row then gets its
//! spread label, and the heads are fitted again on all of them.
//!
//! Unlabelled rows are the training part's rows without a label for the
//! head (`[data] unlabelled`, manifest rows with empty cells) and, with
//! `[training] transductive = true`, the test part's rows: their pixels,
//! never their labels, which are only used to score.
//!
//! With `[data] augment`, the graph's nodes are the plain rows; each view
//! takes the label spread to its image, so an image and its views always
//! train with one label.

use super::fit::{fit_rows, Fitted};
use super::parts::FitData;
use crate::config::{LoadedConfig, SemiSupervised};
use crate::data::{split, Dataset};
use crate::extractor::FeatureExtractor;
use crate::progress::Progress;
use crate::train::propagate::spread;
use crate::{train, Error, Result};

/// What the semi-supervised step did, for the run's notes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SemiReport {
    /// Per class head: its name, the labelled rows, the rows it gave a label.
    pub(crate) heads: Vec<(String, usize, usize)>,
    /// Of those, rows of the test part (transductive).
    pub(crate) test_rows: usize,
}

impl SemiReport {
    /// One line for `metrics.json`'s notes.
    pub(crate) fn note(&self) -> String {
        let heads: Vec<String> = self
            .heads
            .iter()
            .map(|(h, labelled, given)| format!("{h}: {given} unlabelled rows labelled from {labelled}"))
            .collect();
        let how = if self.test_rows > 0 {
            format!(
                "transductive: {} of them are the test part's images (their pixels, not their labels)",
                self.test_rows
            )
        } else {
            "the test part was not used".to_string()
        };
        format!("semi-supervised (label propagation): {}; {how}", heads.join("; "))
    }
}

/// [`fit_rows`], then, with `semi_supervised = "propagation"`, the heads
/// fitted again with the unlabelled rows labelled by propagation. Returns
/// the final fit and what the step did (`None`: off, or nothing unlabelled).
pub(crate) fn fit_semi(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    snapshots: &mut dyn train::Checkpointer,
    progress: &mut dyn Progress,
) -> Result<(Fitted, Option<SemiReport>)> {
    let t = &cfg.config.training;
    if t.semi_supervised == SemiSupervised::Off {
        return Ok((fit_rows(cfg, extractor, rows, parts, snapshots, progress)?, None));
    }
    let mut fitted = fit_rows(cfg, extractor, rows, parts, &mut train::NoCheckpoints, progress)?;
    let mut train_parts = parts.clone();
    if t.transductive {
        train_parts.train.extend_from_slice(&parts.test);
        train_parts.train.sort_unstable();
    }
    let mut report = None;
    for round in 0..t.propagation.rounds {
        // Each round spreads the true labels over the graph of the last fit's logits.
        let Some((data, done)) = pseudo_labels(cfg, &fitted, rows, parts)? else { break };
        drop(fitted);
        let last = round + 1 == t.propagation.rounds;
        let rows = FitData { data: &data, ..*rows };
        let mut no_snapshots = train::NoCheckpoints;
        let snapshots: &mut dyn train::Checkpointer = if last { &mut *snapshots } else { &mut no_snapshots };
        fitted = fit_rows(cfg, extractor, &rows, &train_parts, snapshots, progress)?;
        report = Some(done);
    }
    let Some(report) = report else { return Ok((fitted, None)) };
    Ok((fitted, Some(report)))
}

/// The rows' data set with every unlabelled row's class cells filled by
/// label propagation, and what was done; `None` when no row is unlabelled.
fn pseudo_labels(
    cfg: &LoadedConfig,
    fitted: &Fitted,
    rows: &FitData,
    parts: &split::Split,
) -> Result<Option<(Dataset, SemiReport)>> {
    let c = &cfg.config;
    let t = &c.training;
    let mut data = rows.data.clone();
    let mut report = SemiReport { heads: Vec::new(), test_rows: 0 };
    let test: &[usize] = if t.transductive { &parts.test } else { &[] };
    // Views ([data] augment) are not nodes: they take their image's label below.
    let plain = |r: usize| rows.base.is_none_or(|b| b[r] == r);
    for (i, (head, config)) in fitted.model.heads().iter().zip(&c.heads).enumerate() {
        let Some(classes) = head.classes() else { continue };
        let labels = rows.data.labels(config.column())?;
        let known: Vec<(usize, usize)> = parts
            .train
            .iter()
            .chain(&parts.val)
            .filter(|&&r| plain(r))
            .filter_map(|&r| {
                let label = labels[r]?;
                classes.iter().position(|c| c == label).map(|k| (r, k))
            })
            .collect();
        let unknown: Vec<usize> = parts
            .train
            .iter()
            .copied()
            .filter(|&r| labels[r].is_none())
            .chain(test.iter().copied())
            .filter(|&r| plain(r))
            .collect();
        if known.is_empty() || unknown.is_empty() {
            continue;
        }
        let nodes: Vec<usize> = known.iter().map(|&(r, _)| r).chain(unknown.iter().copied()).collect();
        let outputs = fitted.model.forward_eval(&fitted.rows(rows.features, &nodes))?;
        let out = outputs[i].f_to_kind(tch::Kind::Double)?;
        let seeded = out.f_narrow(0, 0, known.len() as i64)?;
        let mean = seeded.f_mean_dim(0, false, tch::Kind::Double)?;
        let std = seeded.f_std_dim(0, false, false)?.f_clamp_min(1e-12)?;
        let points = out.f_sub(&mean)?.f_div(&std)?;
        let seeds: Vec<(usize, usize)> = known.iter().enumerate().map(|(n, &(_, k))| (n, k)).collect();
        let spread = spread(&points, &seeds, classes.len(), &t.propagation)?;
        let given = spread.labels();
        let column = data.columns.get_mut(config.column()).ok_or_else(|| {
            Error::Invalid(format!("no column `{}` for head `{}`", config.column(), config.name()))
        })?;
        for (n, &r) in unknown.iter().enumerate() {
            column[r] = Some(classes[given[known.len() + n]].clone());
        }
        if let Some(base) = rows.base {
            let spread_to: std::collections::HashSet<usize> = unknown.iter().copied().collect();
            for r in 0..column.len() {
                if base[r] != r && spread_to.contains(&base[r]) {
                    column[r] = column[base[r]].clone();
                }
            }
        }
        report.heads.push((config.name().to_string(), known.len(), unknown.len()));
        report.test_rows = test.iter().filter(|&&r| plain(r)).count();
    }
    Ok((!report.heads.is_empty()).then_some((data, report)))
}
