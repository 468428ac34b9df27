//! The training loop: trunk and heads (and a trainable tail of the backbone,
//! when the model has one) on cached features, Adam or AdamW, full batch or
//! mini-batches, early stopping on the validation loss with the best
//! epoch restored, NaN detection per head, and resumable checkpoints.

pub mod config;
pub mod decay;
pub mod lbfgs;
pub mod optim;
pub mod propagate;
pub mod ridge;
mod solve;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::head::Targets;
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::{Error, Result};
pub use config::{LossWeighting, OptimizerKind, TrainingConfig, WeightDecay};

pub use decay::Decay;
pub use lbfgs::{Convergence, Iteration, Lbfgs, LbfgsConfig};
pub use optim::Adam;
pub(crate) use solve::OneThread;

/// Features and per-head targets of one part of the data.
#[derive(Debug)]
pub struct Batch {
    /// `[N, D]` features on the training device.
    pub features: Tensor,
    /// One [`Targets`] per head, in model order.
    pub targets: Vec<Targets>,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> i64 {
        self.features.size()[0]
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rows(&self, idx: &Tensor) -> Batch {
        Batch {
            features: self.features.index_select(0, idx),
            targets: self
                .targets
                .iter()
                .map(|t| Targets { values: t.values.index_select(0, idx), mask: t.mask.index_select(0, idx) })
                .collect(),
        }
    }
}

/// Losses of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Weighted total training loss.
    pub train_total: f64,
    /// Training loss per head.
    pub train: Vec<f64>,
    /// Weighted total validation loss, when there is a validation part.
    pub val_total: Option<f64>,
    /// Validation loss per head.
    pub val: Option<Vec<f64>>,
}

/// Everything needed to continue an interrupted run exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeInfo {
    /// Epochs finished.
    pub epoch: usize,
    /// History so far.
    pub history: Vec<EpochRecord>,
    /// Best epoch so far and its monitored loss.
    pub best: Option<(usize, f64)>,
    /// Optimiser steps taken.
    pub optimizer_steps: i64,
}

/// The outcome of [`train`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Per-epoch losses.
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights were kept (lowest validation loss, or lowest training loss without validation).
    pub best_epoch: usize,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// Whether early stopping ended the run before `epochs` (L-BFGS: whether
    /// it converged before its iteration limit).
    pub stopped_early: bool,
    /// L-BFGS: every iteration's objective and largest gradient entry (empty
    /// for the other optimisers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub solve: Vec<SolveStep>,
}

/// One L-BFGS iteration of a solve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolveStep {
    /// 1-based iteration.
    pub iteration: usize,
    /// The objective after it: the losses (weighted) plus the L2 penalty, of
    /// every head solved by L-BFGS (a head solved in closed form is left out).
    pub objective: f64,
    /// The largest absolute gradient entry after it, over the solvers that
    /// still ran (the convergence test's `tolerance_grad` bounds it).
    pub grad_max: f64,
}

/// Receives resumable snapshots every `checkpoint_every` epochs, and hands
/// [`train`] the snapshot to continue from, if any.
pub trait Checkpointer {
    /// Stores the current (and best) variables, the optimiser state and `info`.
    fn save(&mut self, tensors: Vec<(String, Tensor)>, info: &ResumeInfo) -> Result<()>;

    /// The snapshot training should continue from (taken once).
    fn take_resume(&mut self) -> Option<Resume> {
        None
    }
}

/// A checkpointer that keeps nothing.
#[derive(Debug, Default)]
pub struct NoCheckpoints;

impl Checkpointer for NoCheckpoints {
    fn save(&mut self, _tensors: Vec<(String, Tensor)>, _info: &ResumeInfo) -> Result<()> {
        Ok(())
    }
}

/// A snapshot to resume from: tensors written by a [`Checkpointer`] and its info.
#[derive(Debug)]
pub struct Resume {
    /// Named tensors (`var.*`, `best.*`, `m.*`, `v.*`).
    pub tensors: HashMap<String, Tensor>,
    /// Where training stood.
    pub info: ResumeInfo,
}

/// Trains `model` (whose variables live in `vs`) on `train`, monitoring
/// `val`, with `cfg.weight_decay` (which must be one value here; a list is
/// chosen from by [`crate::run`]) on every variable ([`Decay::uniform`]).
///
/// Deterministic on CPU for a given seed: each epoch reseeds libtorch with
/// `(seed, epoch)`, so a resumed run makes the same dropout masks and batch
/// orders as an uninterrupted one.
pub fn train(
    model: &MultiHeadModel,
    vs: &nn::VarStore,
    data: &Batch,
    val: Option<&Batch>,
    cfg: &TrainingConfig,
    checkpointer: &mut dyn Checkpointer,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    let decay = match cfg.weight_decay.values().as_slice() {
        [v] => Decay::uniform(*v),
        more => {
            return Err(Error::Training(format!(
                "training.weight_decay lists {} values; the run chooses one (furcate train), \
                 the bare training loop takes one",
                more.len()
            )))
        }
    };
    train_with(model, vs, data, val, cfg, &decay, checkpointer, progress)
}

/// [`train`] with the weight decay of each variable given by `decay`.
/// `optimizer = "lbfgs"` runs [`Lbfgs`] full batch: one iteration per
/// history row, until converged or `epochs` iterations, keeping the last
/// iterate (the optimum: no early stopping); resuming restarts it from the
/// snapshot's variables with an empty curvature history.
#[allow(clippy::too_many_arguments)]
pub fn train_with(
    model: &MultiHeadModel,
    vs: &nn::VarStore,
    data: &Batch,
    val: Option<&Batch>,
    cfg: &TrainingConfig,
    decay: &Decay,
    checkpointer: &mut dyn Checkpointer,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    if cfg.optimizer == OptimizerKind::Lbfgs {
        let job = solve::Job { model, vs, data, val, cfg, decay, record: true };
        return solve::train_lbfgs(&job, checkpointer, progress);
    }
    let names = model.head_names();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Adam::new(
        vars.iter().map(|(_, t)| t.shallow_clone()).collect(),
        cfg.optimizer,
        cfg.learning_rate,
        vars.iter().map(|(n, _)| decay.of(n)).collect(),
    );
    let mut best_vars: Vec<Tensor> = vars.iter().map(|(_, t)| t.detach().copy()).collect();
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut start = 0;
    if let Some(r) = checkpointer.take_resume() {
        let ok = vars.iter().all(|(n, t)| {
            r.tensors.get(&format!("var.{n}")).is_some_and(|s| s.size() == t.size())
                && r.tensors.get(&format!("best.{n}")).is_some_and(|s| s.size() == t.size())
        });
        if !ok || !opt.load_state(&r.tensors, r.info.optimizer_steps) {
            return Err(Error::Training(
                "the checkpoint does not fit this model; start without --resume".into(),
            ));
        }
        tch::no_grad(|| {
            for ((n, t), b) in vars.iter_mut().zip(&mut best_vars) {
                t.copy_(&r.tensors[&format!("var.{n}")]);
                b.copy_(&r.tensors[&format!("best.{n}")]);
            }
        });
        history = r.info.history;
        best = r.info.best;
        start = r.info.epoch;
    }
    let n = data.len();
    if n == 0 {
        return Err(Error::Training("no training rows".into()));
    }
    let bs = if cfg.batch_size == 0 { n } else { (cfg.batch_size as i64).min(n) };
    let patience = cfg.patience.filter(|_| val.is_some_and(|v| !v.is_empty()));
    let mut stopped_early = false;
    progress.start("training", cfg.epochs as u64);
    progress.advance(start as u64, None);
    for epoch in start + 1..=cfg.epochs {
        tch::manual_seed(seed_for(cfg.seed, epoch));
        let order =
            if bs < n { Tensor::randperm(n, (Kind::Int64, data.features.device())) } else { Tensor::new() };
        let mut sums = vec![0.0; names.len()];
        let mut total = 0.0;
        let mut start_row = 0;
        while start_row < n {
            let len = bs.min(n - start_row);
            let part;
            let batch = if bs < n {
                part = data.rows(&order.narrow(0, start_row, len));
                &part
            } else {
                data
            };
            opt.zero_grad();
            let outputs = model.forward(&batch.features, true)?;
            let losses = model.losses(&outputs, &batch.targets)?;
            let loss = model.total_loss(&losses);
            let values: Vec<f64> = losses.iter().map(|l| l.double_value(&[])).collect();
            check_finite(&names, &values, epoch)?;
            loss.backward();
            opt.step();
            let frac = len as f64 / n as f64;
            for (s, v) in sums.iter_mut().zip(&values) {
                *s += v * frac;
            }
            total += loss.double_value(&[]) * frac;
            start_row += len;
        }
        let (val_total, val_losses) = match val.filter(|v| !v.is_empty()) {
            Some(v) => {
                let (t, l) = evaluate_losses(model, v)?;
                check_finite(&names, &l, epoch)?;
                (Some(t), Some(l))
            }
            None => (None, None),
        };
        let monitored = val_total.unwrap_or(total);
        if best.is_none_or(|(_, b)| monitored < b) {
            best = Some((epoch, monitored));
            tch::no_grad(|| {
                for ((_, t), b) in vars.iter().zip(&mut best_vars) {
                    b.copy_(t);
                }
            });
        }
        history.push(EpochRecord { epoch, train_total: total, train: sums, val_total, val: val_losses });
        progress.advance(epoch as u64, Some(&format!("loss {monitored:.4}")));
        let best_epoch = best.map(|b| b.0).unwrap_or(epoch);
        let finished = epoch == cfg.epochs || patience.is_some_and(|p| epoch - best_epoch >= p);
        if cfg.checkpoint_every > 0 && epoch % cfg.checkpoint_every == 0 && !finished {
            let mut tensors: Vec<(String, Tensor)> = Vec::new();
            for ((name, t), b) in vars.iter().zip(&best_vars) {
                tensors.push((format!("var.{name}"), t.detach().copy()));
                tensors.push((format!("best.{name}"), b.shallow_clone()));
            }
            let (state, steps) = opt.state();
            tensors.extend(state);
            let info = ResumeInfo { epoch, history: history.clone(), best, optimizer_steps: steps };
            checkpointer.save(tensors, &info)?;
        }
        if finished {
            stopped_early = epoch < cfg.epochs;
            break;
        }
    }
    progress.finish();
    tch::no_grad(|| {
        for ((_, t), b) in vars.iter_mut().zip(&best_vars) {
            t.copy_(b);
        }
    });
    let epochs_run = history.last().map(|r| r.epoch).unwrap_or(0);
    Ok(TrainOutcome {
        best_epoch: best.map(|b| b.0).unwrap_or(epochs_run),
        epochs_run,
        stopped_early,
        history,
        solve: Vec::new(),
    })
}

/// Weighted total and per-head losses in evaluation mode (no dropout, no gradient).
pub fn evaluate_losses(model: &MultiHeadModel, data: &Batch) -> Result<(f64, Vec<f64>)> {
    tch::no_grad(|| {
        let outputs = model.forward_eval(&data.features)?;
        let losses = model.losses(&outputs, &data.targets)?;
        let total = model.total_loss(&losses).f_double_value(&[])?;
        Ok((total, losses.iter().map(|l| l.f_double_value(&[])).collect::<std::result::Result<_, _>>()?))
    })
}

/// [`train_with`] for a candidate that is compared, not kept: with
/// `optimizer = "lbfgs"` no per-iteration losses are evaluated (the outcome's
/// history is empty), no checkpoints or progress; other optimisers train as
/// [`train_with`] does.
pub(crate) fn train_candidate(
    model: &MultiHeadModel,
    vs: &nn::VarStore,
    data: &Batch,
    cfg: &TrainingConfig,
    decay: &Decay,
) -> Result<TrainOutcome> {
    if cfg.optimizer == OptimizerKind::Lbfgs {
        let job = solve::Job { model, vs, data, val: None, cfg, decay, record: false };
        return solve::train_lbfgs(&job, &mut NoCheckpoints, &mut crate::progress::Silent);
    }
    train_with(model, vs, data, None, cfg, decay, &mut NoCheckpoints, &mut crate::progress::Silent)
}

pub(crate) fn check_finite(names: &[String], values: &[f64], epoch: usize) -> Result<()> {
    for (name, v) in names.iter().zip(values) {
        if !v.is_finite() {
            return Err(Error::Training(format!(
                "the loss of head `{name}` is {v} at epoch {epoch}; lower training.learning_rate or check its labels"
            )));
        }
    }
    Ok(())
}

pub(crate) fn seed_for(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64) as i64 & i64::MAX
}

/// The columns of `history.csv` and the report's loss curves:
/// `epoch,train_total,val_total,train_<head>...,val_<head>...`, one row per
/// epoch (`None`: no validation part).
pub fn history_columns(heads: &[String], history: &[EpochRecord]) -> (Vec<String>, Vec<Vec<Option<f64>>>) {
    let mut header: Vec<String> = ["epoch", "train_total", "val_total"].map(String::from).to_vec();
    header.extend(heads.iter().map(|h| format!("train_{h}")));
    header.extend(heads.iter().map(|h| format!("val_{h}")));
    let rows = history
        .iter()
        .map(|r| {
            let mut row = vec![Some(r.epoch as f64), Some(r.train_total), r.val_total];
            row.extend(r.train.iter().map(|&v| Some(v)));
            row.extend((0..heads.len()).map(|i| r.val.as_ref().map(|v| v[i])));
            row
        })
        .collect();
    (header, rows)
}
