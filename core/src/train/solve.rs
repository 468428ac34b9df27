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
    // Separable heads (no trunk, tail or learned weights) are solved one by
    // one, each by its own L-BFGS on its own loss: each stops when it has
    // converged, and no head's curvature or line search touches another's.
    // Otherwise one L-BFGS solves the whole objective.
    let groups: Vec<(Option<usize>, Vec<usize>)> = if model.heads_are_separable() {
        (0..names.len())
            .map(|h| {
                let prefix = format!("heads.{}.", names[h]);
                (Some(h), (0..vars.len()).filter(|&v| vars[v].0.starts_with(&prefix)).collect())
            })
            .filter(|(_, v): &(Option<usize>, Vec<usize>)| !v.is_empty())
            .collect()
    } else {
        vec![(None, (0..vars.len()).collect())]
    };
    let weights = model.loss_weights().to_vec();
    let mut solvers: Vec<Lbfgs> = groups
        .iter()
        .map(|(_, v)| Lbfgs::new(v.iter().map(|&i| vars[i].1.shallow_clone()).collect(), 1.0, cfg.lbfgs))
        .collect();
    let mut objectives: Vec<Box<dyn FnMut() -> Result<f64> + '_>> = groups
        .iter()
        .map(|(head, members)| {
            let own: Vec<Tensor> = members.iter().map(|&i| vars[i].1.shallow_clone()).collect();
            let penalty: Vec<(Tensor, f64)> = members
                .iter()
                .map(|&i| (vars[i].1.shallow_clone(), decay.of(&vars[i].0)))
                .filter(|(_, d)| *d > 0.0)
                .collect();
            let head = *head;
            let weight = head.map_or(1.0, |h| weights[h]);
            Box::new(move || -> Result<f64> {
                for t in &own {
                    let mut g = t.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                }
                // Dropout off: the line search needs a deterministic objective.
                let mut total = match head {
                    Some(h) => {
                        let out = model
                            .forward_head(h, &data.features, false)
                            .ok_or_else(|| Error::Training("heads are not separable".into()))?;
                        model.heads()[h].masked_loss(&out, &data.targets[h]) * weight
                    }
                    None => {
                        let outputs = model.forward(&data.features, false);
                        model.total_loss(&model.losses(&outputs, &data.targets))
                    }
                };
                for (t, d) in &penalty {
                    total += t.square().sum(tch::Kind::Float) * (0.5 * d);
                }
                let value = total.double_value(&[]);
                if value.is_finite() {
                    total.backward();
                }
                Ok(value)
            }) as Box<dyn FnMut() -> Result<f64> + '_>
        })
        .collect();
    let mut converged = vec![false; groups.len()];
    progress.start("solving (L-BFGS)", cfg.epochs as u64);
    progress.advance(start as u64, None);
    let mut stopped_early = false;
    for iteration in start + 1..=cfg.epochs {
        let mut objective_value = 0.0;
        for ((solver, f), done) in solvers.iter_mut().zip(&mut objectives).zip(&mut converged) {
            if *done {
                continue;
            }
            let step = solver.iterate(f.as_mut())?;
            objective_value += step.loss;
            *done = step.converged.is_some();
        }
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
        progress.advance(iteration as u64, Some(&format!("objective {objective_value:.6}")));
        let all_converged = converged.iter().all(|&c| c);
        let finished = all_converged || iteration == cfg.epochs;
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
            stopped_early = all_converged && iteration < cfg.epochs;
            break;
        }
    }
    progress.finish();
    let epochs_run = history.last().map(|r| r.epoch).unwrap_or(start);
    Ok(TrainOutcome { best_epoch: epochs_run, epochs_run, stopped_early, history })
}
