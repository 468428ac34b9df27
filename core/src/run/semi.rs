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

use super::choose;
use super::fit::{fit_rows, fit_rows_as, Fitted};
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
    /// Per class head that propagated: its name, the labelled rows, the rows
    /// it gave a label.
    pub(crate) heads: Vec<(String, usize, usize)>,
    /// Of those, rows of the test part (transductive).
    pub(crate) test_rows: usize,
    /// With `auto`: per class head, what the held-out labels said.
    pub(crate) validation: Vec<HeadValidation>,
}

/// `semi_supervised = "auto"`'s evidence for one class head: its errors on
/// the labels hidden fold by fold, without and with propagation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeadValidation {
    /// The head.
    pub(crate) head: String,
    /// Hidden labels scored (over all folds).
    pub(crate) scored: usize,
    /// Errors of the heads fitted on the other labels alone.
    pub(crate) supervised: usize,
    /// Errors after propagation and refitting.
    pub(crate) propagated: usize,
}

impl HeadValidation {
    /// Whether the head propagates: strictly fewer errors with it.
    pub(crate) fn propagates(&self) -> bool {
        self.propagated < self.supervised
    }
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
        let spread = if heads.is_empty() {
            "no head propagates".to_string()
        } else {
            format!("{}; {how}", heads.join("; "))
        };
        let chosen: Vec<String> = self
            .validation
            .iter()
            .map(|v| {
                format!(
                    "{} {} ({} errors without, {} with, of {} hidden labels)",
                    v.head,
                    if v.propagates() { "propagates" } else { "does not" },
                    v.supervised,
                    v.propagated,
                    v.scored
                )
            })
            .collect();
        if chosen.is_empty() {
            format!("semi-supervised (label propagation): {spread}")
        } else {
            format!("semi-supervised (auto: {}): {spread}", chosen.join(", "))
        }
    }
}

/// [`fit_rows`], then, with `semi_supervised = "propagation"` (or `auto`,
/// for the heads it chooses), the heads fitted again with the unlabelled
/// rows labelled by propagation. Returns the final fit and what the step
/// did (`None`: off, or nothing unlabelled).
pub(crate) fn fit_semi(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    snapshots: &mut dyn train::Checkpointer,
    progress: &mut dyn Progress,
) -> Result<(Fitted, Option<SemiReport>)> {
    let c = &cfg.config;
    let auto = match c.training.semi_supervised {
        SemiSupervised::Off => {
            return Ok((fit_rows(cfg, extractor, rows, parts, snapshots, progress)?, None))
        }
        SemiSupervised::Propagation => false,
        SemiSupervised::Auto if !anything_to_spread(cfg, rows, parts)? => {
            return Ok((fit_rows(cfg, extractor, rows, parts, snapshots, progress)?, None))
        }
        SemiSupervised::Auto => true,
    };
    let first = fit_rows(cfg, extractor, rows, parts, &mut train::NoCheckpoints, progress)?;
    // Only class heads propagate; every other head is kept as fitted on the labels.
    let heads: Vec<bool> = first.model.heads().iter().map(|h| h.classes().is_some()).collect();
    let Some(mut done) =
        propagate_rounds(cfg, extractor, rows, parts, &first, &heads, None, snapshots, progress)?
    else {
        return Ok((first, None));
    };
    let validation = if auto {
        validate(cfg, extractor, rows, parts, (&first.choices, &done.choices), progress)?
    } else {
        Vec::new()
    };
    let chosen: Vec<bool> = heads
        .iter()
        .zip(&c.heads)
        .map(|(&on, h)| on && (!auto || validation.iter().any(|v| v.head == h.name() && v.propagates())))
        .collect();
    if !chosen.iter().any(|&on| on) {
        return Ok((first, Some(SemiReport { heads: Vec::new(), test_rows: 0, validation })));
    }
    if c.trunk.is_some() && chosen != heads {
        // A trunk joins the heads: fit again with only the chosen ones propagating.
        done = propagate_rounds(cfg, extractor, rows, parts, &first, &chosen, None, snapshots, progress)?
            .ok_or_else(|| Error::Training("semi_supervised: nothing to spread in the refit".into()))?;
    }
    Kept::from(&first, c, &chosen).restore(&mut done.fitted)?;
    let mut report = done.report;
    report.heads.retain(|(name, _, _)| c.heads.iter().zip(&chosen).any(|(h, &on)| on && h.name() == name));
    Ok((done.fitted, Some(SemiReport { validation, ..report })))
}

/// Whether any row could take a spread label: a training row without a
/// label for some head, or (transductive) a test row.
fn anything_to_spread(cfg: &LoadedConfig, rows: &FitData, parts: &split::Split) -> Result<bool> {
    let c = &cfg.config;
    if c.training.transductive && !parts.test.is_empty() {
        return Ok(true);
    }
    for h in &c.heads {
        let labels = rows.data.labels(h.column())?;
        if parts.train.iter().any(|&r| labels[r].is_none()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The labelled-only fit of the heads that do not propagate (value heads,
/// and the class heads that `auto` leaves off), kept through
/// the refits: without a trunk a head depends on nothing but its own
/// parameters and the scaler (the first fit's, kept by the refits), so it ends
/// exactly as `semi_supervised = "off"` fits it (with a trunk, every head
/// is refitted with the others).
struct Kept {
    /// Per kept head: its index, its choice, its parameters by name.
    heads: Vec<(usize, crate::results::choices::HeadChoice, Parameters)>,
}

/// A head's parameters, by their names in the model's variable store.
type Parameters = Vec<(String, tch::Tensor)>;

impl Kept {
    fn from(fitted: &Fitted, c: &crate::config::RunConfig, propagates: &[bool]) -> Kept {
        if c.trunk.is_some() || propagates.iter().all(|&p| p) {
            return Kept { heads: Vec::new() };
        }
        let variables = fitted.vs.variables();
        let heads = c
            .heads
            .iter()
            .enumerate()
            .filter(|&(i, _)| !propagates[i])
            .filter_map(|(i, h)| {
                let choice = fitted.choices.heads.get(i)?.clone();
                // tch names a variable by its path, joined with dots.
                let prefix = format!("heads.{}.", h.name());
                let params = variables
                    .iter()
                    .filter(|(name, _)| name.starts_with(&prefix))
                    .map(|(name, t)| (name.clone(), t.copy()))
                    .collect();
                Some((i, choice, params))
            })
            .collect();
        Kept { heads }
    }

    /// Puts the kept heads back into `fitted` (a head whose chosen taps
    /// changed in the refit keeps its refit).
    fn restore(self, fitted: &mut Fitted) -> Result<()> {
        let mut variables = fitted.vs.variables();
        for (i, choice, params) in self.heads {
            if params.is_empty() {
                return Err(Error::Invalid(format!(
                    "semi_supervised: no parameters found for head {} of the labelled-only fit",
                    choice.head
                )));
            }
            if fitted.choices.heads.get(i).map(|h| &h.taps) != Some(&choice.taps) {
                continue;
            }
            tch::no_grad(|| -> Result<()> {
                for (name, value) in &params {
                    let Some(target) = variables.get_mut(name) else {
                        return Err(Error::Invalid(format!("no parameter `{name}` in the refitted model")));
                    };
                    target.f_copy_(value)?;
                }
                Ok(())
            })?;
            fitted.choices.heads[i] = choice;
        }
        Ok(())
    }
}

/// What [`propagate_rounds`] ends with.
struct Propagated {
    /// The last refit.
    fitted: Fitted,
    /// What the last round spread.
    report: SemiReport,
    /// Each round's choices (taps, weight decays), in order.
    choices: Vec<choose::Choices>,
}

/// `[training.propagation] rounds` of spreading the true labels over the
/// graph of the last fit's logits (for the heads marked in `heads`) and
/// fitting again, from the labelled-only fit `first`. Each refit makes its
/// own choices, or takes round `r`'s of `given`. `None` when no head has
/// anything to spread.
#[allow(clippy::too_many_arguments)]
fn propagate_rounds(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    first: &Fitted,
    heads: &[bool],
    given: Option<&[choose::Choices]>,
    snapshots: &mut dyn train::Checkpointer,
    progress: &mut dyn Progress,
) -> Result<Option<Propagated>> {
    let t = &cfg.config.training;
    let mut train_parts = parts.clone();
    if t.transductive {
        train_parts.train.extend_from_slice(&parts.test);
        train_parts.train.sort_unstable();
    }
    let mut last: Option<(Fitted, SemiReport)> = None;
    let mut choices = Vec::new();
    for round in 0..t.propagation.rounds {
        let previous = last.take();
        let spread = pseudo_labels(cfg, previous.as_ref().map_or(first, |(f, _)| f), rows, parts, heads)?;
        let Some((data, done)) = spread else {
            last = previous;
            break;
        };
        drop(previous);
        let final_round = round + 1 == t.propagation.rounds;
        // Strata from what is known now (the spread labels), never from test labels.
        let strata = super::parts::strata(&cfg.config, &data)?;
        let rows = FitData { data: &data, strata: &strata, scale_rows: Some(&parts.train), ..*rows };
        let fitted = match given.and_then(|g| g.get(round)) {
            Some(made) => fit_rows_as(cfg, extractor, &rows, &train_parts, made, progress)?,
            None if final_round => fit_rows(cfg, extractor, &rows, &train_parts, snapshots, progress)?,
            None => fit_rows(cfg, extractor, &rows, &train_parts, &mut train::NoCheckpoints, progress)?,
        };
        choices.push(fitted.choices.clone());
        last = Some((fitted, done));
    }
    Ok(last.map(|(fitted, report)| Propagated { fitted, report, choices }))
}

/// `semi_supervised = "auto"`: per class head, its errors on labels hidden
/// fold by fold (`[training.propagation] folds` of the labelled images of
/// the training and validation parts, an image's tiles and views kept
/// together), fitted on the other labels without and with propagation. The
/// hidden images join the unlabelled ones, as a new micrograph would.
///
/// The folds' fits take the run's own choices instead of choosing again
/// (`made`: the labelled-only fit's, then each propagation round's): the
/// question is whether propagation helps at the settings the run uses, and
/// one training per head and fold costs a small part of a search.
fn validate(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    rows: &FitData,
    parts: &split::Split,
    made: (&choose::Choices, &[choose::Choices]),
    progress: &mut dyn Progress,
) -> Result<Vec<HeadValidation>> {
    let c = &cfg.config;
    let t = &c.training;
    // Per class head (found in the first fold's model): its errors.
    let mut out: Vec<(usize, HeadValidation)> = Vec::new();
    // The unit that is hidden at once: the image (its tiles and views), else the row.
    let unit = |r: usize| rows.groups.map_or(r, |g| g[r]);
    let plain = |r: usize| rows.base.is_none_or(|b| b[r] == r);
    let columns: Vec<Vec<Option<&str>>> =
        c.heads.iter().map(|h| rows.data.labels(h.column())).collect::<Result<_>>()?;
    let labelled = |r: usize| columns.iter().any(|col| col[r].is_some());
    let mut units: Vec<usize> =
        parts.train.iter().chain(&parts.val).copied().filter(|&r| labelled(r)).map(&unit).collect();
    units.sort_unstable();
    units.dedup();
    if units.len() < t.propagation.folds {
        return Err(cfg.error_at_key(
            "semi_supervised",
            0,
            format!(
                "semi_supervised = \"auto\" hides the labels of [training.propagation] folds = {} \
                 groups of images in turn, but only {} labelled images are in the training part: \
                 lower folds (at least 2) or use \"propagation\"",
                t.propagation.folds,
                units.len()
            ),
        ));
    }
    let known: Vec<usize> = parts.train.iter().chain(&parts.val).copied().collect();
    let folds = super::parts::unit_folds(&units, &known, unit, rows.strata, t.propagation.folds, t.seed);
    for (f, fold) in folds.iter().enumerate() {
        tracing::info!(
            "semi_supervised = \"auto\": fold {} of {}, {} images' labels hidden",
            f + 1,
            folds.len(),
            fold.len()
        );
        let hidden_units: std::collections::HashSet<usize> = fold.iter().map(|&k| units[k]).collect();
        let hidden = |r: usize| hidden_units.contains(&unit(r));
        let mut data = rows.data.clone();
        data.hide_labels(hidden);
        let strata = super::parts::strata(c, &data)?;
        let mut fold_parts = parts.clone();
        fold_parts.train.extend(parts.val.iter().copied().filter(|&r| hidden(r)));
        fold_parts.train.sort_unstable();
        fold_parts.val.retain(|&r| !hidden(r));
        let fold_rows = FitData { data: &data, strata: &strata, ..*rows };
        let scored: Vec<usize> =
            parts.train.iter().chain(&parts.val).copied().filter(|&r| hidden(r) && plain(r)).collect();
        // Per head: (hidden labels scored, errors); `None` for a value head.
        let errors = |fitted: &Fitted| -> Result<Vec<Option<(usize, usize)>>> {
            let outputs = fitted.model.forward_eval(&fitted.rows(rows.features, &scored))?;
            fitted
                .model
                .heads()
                .iter()
                .zip(&outputs)
                .zip(&columns)
                .map(|((head, output), truth)| {
                    let Some(names) = head.classes() else { return Ok(None) };
                    let predicted = Vec::<i64>::try_from(output.f_argmax(1, false)?)?;
                    let mut n = (0, 0);
                    for (&r, &k) in scored.iter().zip(&predicted) {
                        if let Some(label) = truth[r] {
                            n.0 += 1;
                            n.1 += usize::from(names.get(k as usize).map(String::as_str) != Some(label));
                        }
                    }
                    Ok(Some(n))
                })
                .collect()
        };
        let supervised = fit_rows_as(cfg, extractor, &fold_rows, &fold_parts, made.0, progress)?;
        let before = errors(&supervised)?;
        let all = vec![true; c.heads.len()];
        let propagated = propagate_rounds(
            cfg,
            extractor,
            &fold_rows,
            &fold_parts,
            &supervised,
            &all,
            Some(made.1),
            &mut train::NoCheckpoints,
            progress,
        )?;
        let propagated = propagated.as_ref().map_or(&supervised, |p| &p.fitted);
        let after = errors(propagated)?;
        if f == 0 {
            out = before
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_some())
                .map(|(i, _)| {
                    let head = c.heads[i].name().to_string();
                    (i, HeadValidation { head, scored: 0, supervised: 0, propagated: 0 })
                })
                .collect();
        }
        for (i, v) in &mut out {
            let (Some((n, without)), Some((_, with))) = (before[*i], after[*i]) else { continue };
            v.scored += n;
            v.supervised += without;
            v.propagated += with;
        }
    }
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// The rows' data set with every unlabelled row's class cells filled by
/// label propagation, and what was done; `None` when no row is unlabelled.
fn pseudo_labels(
    cfg: &LoadedConfig,
    fitted: &Fitted,
    rows: &FitData,
    parts: &split::Split,
    heads: &[bool],
) -> Result<Option<(Dataset, SemiReport)>> {
    let c = &cfg.config;
    let t = &c.training;
    let mut data = rows.data.clone();
    let mut report = SemiReport { heads: Vec::new(), test_rows: 0, validation: Vec::new() };
    let test: &[usize] = if t.transductive { &parts.test } else { &[] };
    // The test part's rows train (transductive) with no label but a spread one:
    // a head that does not propagate (a value head, or one `auto` left off)
    // must never see them.
    let in_test: std::collections::HashSet<usize> = test.iter().copied().collect();
    data.hide_labels(|r| in_test.contains(&r));
    // Views ([data] augment) are not nodes: they take their image's label below.
    let plain = |r: usize| rows.base.is_none_or(|b| b[r] == r);
    for (i, (head, config)) in fitted.model.heads().iter().zip(&c.heads).enumerate() {
        let Some(classes) = head.classes().filter(|_| heads[i]) else { continue };
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
