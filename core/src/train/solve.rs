//! `optimizer = "lbfgs"`: the model solved full batch by [`Lbfgs`], one
//! history row per iteration; a separable head that is least squares on its
//! input ([`crate::head::PropertyHead::least_squares`]) is solved exactly
//! first ([`super::ridge`]), on the training and validation rows together
//! (its penalty is chosen by leave-one-out over both: it needs no held-out
//! rows, so its validation loss in the history is in-sample).

use tch::{nn, Tensor};

use super::config::TrainingConfig;
use super::{
    check_finite, evaluate_losses, Batch, Checkpointer, Decay, EpochRecord, Lbfgs, ResumeInfo, SolveStep,
    TrainOutcome,
};
use crate::model::MultiHeadModel;
use crate::progress::Progress;
use crate::{Error, Result};

/// The arguments of [`super::train_with`] that say what to solve.
pub(super) struct Job<'a> {
    pub model: &'a MultiHeadModel,
    pub vs: &'a nn::VarStore,
    pub data: &'a Batch,
    pub val: Option<&'a Batch>,
    pub cfg: &'a TrainingConfig,
    pub decay: &'a Decay,
    /// Whether each iteration's losses are evaluated for the history (the
    /// candidates of a choice are compared, not kept: they skip it).
    pub record: bool,
}

/// See [`super::train_with`].
/// Rows x variables (of the largest group solved together) from which an
/// L-BFGS solve runs on the process's intra-op threads; below it, on one.
/// Each iteration is dozens of libtorch operations (the objective, its
/// gradient, the optimiser's dot products and `axpy`s over the flat
/// variables), each of which hands its work to the other threads and wakes
/// them: on a virtual machine that costs tens of microseconds a time, more
/// than a small operation's work. Measured on 2 cores with a 1000-unit trunk
/// (9 x 10^4 variables): 140-1600 rows (up to 1.4 x 10^8) solved 1.1-3x
/// faster on one thread than on two; 2800 rows (2.6 x 10^8) 1.15-1.4x
/// slower. A fixed rule, not a timing, so that a run repeats bit for bit.
pub(crate) const THREADED_WORK: i64 = 200_000_000;

/// While alive, libtorch runs on one intra-op thread (restored on drop).
pub(crate) struct OneThread {
    threads: i32,
}

impl OneThread {
    /// One thread until dropped; `None` (nothing changes) when there is only one.
    pub(crate) fn enter() -> Option<OneThread> {
        let threads = tch::get_num_threads();
        (threads > 1).then(|| {
            tch::set_num_threads(1);
            OneThread { threads }
        })
    }

    /// One thread when `work` is under `threshold`; `None` (nothing changes) otherwise.
    pub(crate) fn below(work: i64, threshold: i64) -> Option<OneThread> {
        if work < threshold {
            Self::enter()
        } else {
            None
        }
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        tch::set_num_threads(self.threads);
    }
}

pub(super) fn train_lbfgs(
    job: &Job<'_>,
    checkpointer: &mut dyn Checkpointer,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    let &Job { model, vs, data, val, cfg, decay, record } = job;
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
    // Each separable head's columns, gathered once (training and validation rows).
    let inputs = |batch: &Batch| -> Vec<Option<Tensor>> {
        groups.iter().map(|(h, _)| h.and_then(|h| model.head_input(h, &batch.features))).collect()
    };
    let train_inputs = inputs(data);
    let val = val.filter(|v| !v.is_empty());
    let val_inputs = val.map(inputs);
    // A small problem is solved on one thread (see THREADED_WORK).
    let rows = data.features.size().first().copied().unwrap_or(0);
    let widest = groups.iter().map(|(_, v)| v.iter().map(|&i| vars[i].1.numel() as i64).sum::<i64>()).max();
    let _threads = OneThread::below(rows.saturating_mul(widest.unwrap_or(0)), THREADED_WORK);
    let mut solvers: Vec<Lbfgs> = groups
        .iter()
        .map(|(_, v)| Lbfgs::new(v.iter().map(|&i| vars[i].1.shallow_clone()).collect(), 1.0, cfg.lbfgs))
        .collect();
    let mut objectives: Vec<Box<dyn FnMut() -> Result<f64> + '_>> = groups
        .iter()
        .zip(&train_inputs)
        .map(|((head, members), input)| {
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
                let mut total = match (head, input) {
                    (Some(h), Some(input)) => {
                        let out = model.heads()[h].forward(input, false)?;
                        model.heads()[h].masked_loss(&out, &data.targets[h])? * weight
                    }
                    _ => {
                        let outputs = model.forward(&data.features, false)?;
                        model.total_loss(&model.losses(&outputs, &data.targets)?)
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
    // A separable head's losses change only while its solver runs: only
    // those heads are evaluated again for the history.
    let head_loss = |h: usize, input: &Tensor, batch: &Batch| -> Result<f64> {
        tch::no_grad(|| {
            let out = model.heads()[h].forward(input, false)?;
            Ok(model.heads()[h].masked_loss(&out, &batch.targets[h])?.f_double_value(&[])?)
        })
    };
    // A separable head that is least squares on its input (a linear
    // regression with squared loss) has a closed form: solved once, exactly.
    let mut converged = vec![false; groups.len()];
    for (g, (head, _)) in groups.iter().enumerate() {
        let (Some(h), Some(input)) = (*head, &train_inputs[g]) else { continue };
        let Some(ls) = model.heads()[h].least_squares() else { continue };
        let weight_decay = vars
            .iter()
            .find(|(_, t)| t.data_ptr() == ls.weight.data_ptr())
            .map_or(0.0, |(name, _)| decay.of(name));
        // Its penalty was chosen by leave-one-out, so it needs no held-out
        // rows: it is fitted on the training and validation rows together.
        let rows = match (val, val_inputs.as_ref().and_then(|v| v[g].as_ref())) {
            (Some(v), Some(vi)) => {
                let t = (&data.targets[h], &v.targets[h]);
                let targets = crate::head::Targets {
                    values: Tensor::f_cat(&[&t.0.values, &t.1.values.f_to_device(t.0.values.device())?], 0)?,
                    mask: Tensor::f_cat(&[&t.0.mask, &t.1.mask.f_to_device(t.0.mask.device())?], 0)?,
                };
                (Tensor::f_cat(&[input, &vi.f_to_device(input.device())?], 0)?, targets)
            }
            _ => (input.shallow_clone(), super::ridge::same_targets(&data.targets[h])),
        };
        super::ridge::solve_head(&names[h], &ls, &rows.0, &rows.1, weight_decay, weights[h])?;
        converged[g] = true;
    }
    let separable = groups.iter().all(|(h, _)| h.is_some()) && train_inputs.iter().all(Option::is_some);
    let (mut train_losses, mut val_losses) = if separable {
        let (_, t) = evaluate_losses(model, data)?;
        (t, val.map(|v| evaluate_losses(model, v).map(|v| v.1)).transpose()?)
    } else {
        (Vec::new(), None)
    };
    progress.start("solving (L-BFGS)", cfg.epochs as u64);
    progress.advance(start as u64, None);
    let mut stopped_early = false;
    let mut last = start;
    // Each solver's latest objective (a converged one keeps its last).
    let mut group_objective: Vec<Option<f64>> = vec![None; groups.len()];
    let mut solve = Vec::new();
    for iteration in start + 1..=cfg.epochs {
        let mut objective_value = 0.0;
        let mut grad_max: f64 = 0.0;
        for (g, ((solver, f), done)) in
            solvers.iter_mut().zip(&mut objectives).zip(&mut converged).enumerate()
        {
            if *done {
                continue;
            }
            let step = solver.iterate(f.as_mut())?;
            objective_value += step.loss;
            group_objective[g] = Some(step.loss);
            grad_max = grad_max.max(step.grad_max);
            *done = step.converged.is_some();
            if !step.loss.is_finite() {
                return Err(Error::Training(format!(
                    "the objective is {} at iteration {iteration}",
                    step.loss
                )));
            }
            if !record {
                continue;
            }
            if let (true, Some(h), Some(input)) = (separable, groups[g].0, &train_inputs[g]) {
                train_losses[h] = head_loss(h, input, data)?;
                if let (Some(v), Some(vl), Some(vi)) = (val, val_losses.as_mut(), &val_inputs) {
                    if let Some(input) = &vi[g] {
                        vl[h] = head_loss(h, input, v)?;
                    }
                }
            }
        }
        last = iteration;
        solve.push(SolveStep { iteration, objective: group_objective.iter().flatten().sum(), grad_max });
        let all_converged = converged.iter().all(|&c| c);
        if !record {
            if all_converged {
                stopped_early = iteration < cfg.epochs;
                break;
            }
            continue;
        }
        let weighted = |l: &[f64]| l.iter().zip(&weights).map(|(l, w)| l * w).sum::<f64>();
        let (train_total, train, val_total, val_record) = if separable {
            let vt = val_losses.as_deref().map(weighted);
            (weighted(&train_losses), train_losses.clone(), vt, val_losses.clone())
        } else {
            let (t, l) = evaluate_losses(model, data)?;
            let v = val.map(|v| evaluate_losses(model, v)).transpose()?;
            (t, l, v.as_ref().map(|v| v.0), v.map(|v| v.1))
        };
        check_finite(&names, &train, iteration)?;
        history.push(EpochRecord { epoch: iteration, train_total, train, val_total, val: val_record });
        progress.advance(iteration as u64, Some(&format!("objective {objective_value:.6}")));
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
    let epochs_run = last;
    Ok(TrainOutcome { best_epoch: epochs_run, epochs_run, stopped_early, history, solve })
}
