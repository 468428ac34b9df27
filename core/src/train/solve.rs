//! `optimizer = "lbfgs"`: the model solved full batch by [`Lbfgs`], one
//! history row per iteration.

use tch::{nn, Tensor};

use super::{
    check_finite, evaluate_losses, Batch, Checkpointer, Decay, EpochRecord, Lbfgs, ResumeInfo, TrainOutcome,
};
use crate::config::TrainingConfig;
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::{Error, Result};

/// See [`super::train_with`].
#[allow(clippy::too_many_arguments)]
pub(super) fn train_lbfgs(
    model: &MultiHeadModel,
    vs: &nn::VarStore,
    data: &Batch,
    val: Option<&Batch>,
    cfg: &TrainingConfig,
    decay: &Decay,
    checkpointer: &mut dyn Checkpointer,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    if data.is_empty() {
        return Err(Error::Training("no training rows".into()));
    }
    let names = model.head_names();
    let mut vars: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let penalised: Vec<(Tensor, f64)> =
        vars.iter().map(|(n, t)| (t.shallow_clone(), decay.of(n))).filter(|(_, d)| *d > 0.0).collect();
    let mut history = Vec::new();
    let mut start = 0;
    if let Some(r) = checkpointer.take_resume() {
        let ok = vars
            .iter()
            .all(|(n, t)| r.tensors.get(&format!("var.{n}")).is_some_and(|s| s.size() == t.size()));
        if !ok {
            return Err(Error::Training(
                "the checkpoint does not fit this model; start without --resume".into(),
            ));
        }
        tch::no_grad(|| {
            for (n, t) in vars.iter_mut() {
                t.copy_(&r.tensors[&format!("var.{n}")]);
            }
        });
        history = r.info.history;
        start = r.info.epoch;
    }
    let mut solver = Lbfgs::new(vars.iter().map(|(_, t)| t.shallow_clone()).collect(), 1.0, cfg.lbfgs);
    let mut objective = || -> Result<f64> {
        for (_, t) in &vars {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        // Dropout off: the line search needs a deterministic objective.
        let outputs = model.forward(&data.features, false);
        let losses = model.losses(&outputs, &data.targets);
        let mut total = model.total_loss(&losses);
        for (t, d) in &penalised {
            total += t.square().sum(tch::Kind::Float) * (0.5 * d);
        }
        let value = total.double_value(&[]);
        if value.is_finite() {
            total.backward();
        }
        Ok(value)
    };
    progress.start("solving (L-BFGS)", cfg.epochs as u64);
    progress.advance(start as u64, None);
    let mut stopped_early = false;
    for iteration in start + 1..=cfg.epochs {
        let step = solver.iterate(&mut objective)?;
        let (train_total, train) = evaluate_losses(model, data);
        check_finite(&names, &train, iteration)?;
        let (val_total, val_losses) = match val.filter(|v| !v.is_empty()) {
            Some(v) => {
                let (t, l) = evaluate_losses(model, v);
                (Some(t), Some(l))
            }
            None => (None, None),
        };
        history.push(EpochRecord { epoch: iteration, train_total, train, val_total, val: val_losses });
        progress.advance(iteration as u64, Some(&format!("objective {:.6}", step.loss)));
        let finished = step.converged.is_some() || iteration == cfg.epochs;
        if cfg.checkpoint_every > 0 && iteration % cfg.checkpoint_every == 0 && !finished {
            let mut tensors: Vec<(String, Tensor)> = Vec::new();
            for (name, t) in &vars {
                tensors.push((format!("var.{name}"), t.detach().copy()));
                tensors.push((format!("best.{name}"), t.detach().copy()));
            }
            let info =
                ResumeInfo { epoch: iteration, history: history.clone(), best: None, optimizer_steps: 0 };
            checkpointer.save(tensors, &info)?;
        }
        if finished {
            stopped_early = step.converged.is_some() && iteration < cfg.epochs;
            break;
        }
    }
    progress.finish();
    let epochs_run = history.last().map(|r| r.epoch).unwrap_or(start);
    Ok(TrainOutcome { best_epoch: epochs_run, epochs_run, stopped_early, history })
}
