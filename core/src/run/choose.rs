//! The choices a run makes by validation before its final training: which
//! taps a head with `taps = "auto"` reads (its point of bifurcation), and
//! which weight decay of a list (or `"auto"`) each head, or the trunk, gets.
//!
//! Candidates are fitted on the training rows and scored on the validation
//! rows; when there are fewer than [`MIN_VALIDATION_ROWS`] of those, by
//! stratified [`FOLDS`]-fold cross-validation inside the training rows (folds
//! of whole images when the rows are tiles, `[data] tile`, or views, `[data]
//! augment`). A head's score is its error rate (discrete heads), else its MAE (value
//! heads), else its loss, on the plain rows scored (views are averaged into
//! their plain row with `[data] tta`, else left out of the score; they count
//! in the loss, each image's rows alike); ties go to the lower validation loss, then to the
//! shallower, shorter candidate (the first in [`TapLayout::runs`] order) and
//! the larger weight decay. An `"auto"` grid is extended past an end where a
//! best, strictly better score sits, by at most
//! [`crate::train::WeightDecay::EXTEND_DECADES`] decades each way.

use tch::{nn, Device, Tensor};

use crate::config::{RunConfig, TrainingConfig};
use crate::data::{split, Dataset};
use crate::extractor::taps::{TapLayout, TapSelection};
use crate::head::{HeadConfig, HeadScore, HeadState, Targets};
use crate::model::{MultiHeadModel, Routes};
use crate::progress::Progress;
use crate::train::{self, Batch, Decay};
use crate::{Error, Result};

pub use crate::results::choices::{Candidate, Choices, FitSummary, HeadChoice};
pub use crate::train::config::MIN_VALIDATION_ROWS;

/// The most iterations (epochs) a candidate is fitted for: candidates are
/// compared, not kept (the final training starts from the chosen one and runs
/// to convergence), and each weight decay starts from the previous solution.
pub const SELECTION_ITERATIONS: usize = 300;

/// The relative loss change at which a candidate's L-BFGS fit stops (at
/// most; a config's own `tolerance_change` when larger): candidates are
/// compared by their validation scores, which do not move once the loss
/// moves by a millionth of itself; the final solve runs to the config's
/// tolerances from the chosen candidate's solution.
pub const SELECTION_TOLERANCE: f64 = 1e-6;

/// The folds of that cross-validation.
pub const FOLDS: usize = 5;

/// The rows and labels the choices are made from.
pub struct Problem<'a> {
    /// The run's configuration.
    pub config: &'a RunConfig,
    /// Each head's fitted state, in config order.
    pub states: &'a [HeadState],
    /// The taps of `features`.
    pub layout: &'a TapLayout,
    /// `[N, D]` features of every row of `data` (standardised when the run is), on `device`.
    pub features: &'a Tensor,
    /// Each head's targets for every row of `data`, on `device`.
    pub targets: &'a [Targets],
    /// The whole data set (labels, for scores).
    pub data: &'a Dataset,
    /// Strata of every row (for the folds).
    pub strata: &'a [String],
    /// The image of every row when an image has several rows (tiles, `[data]
    /// tile`, or views, `[data] augment`): the folds then keep each image's
    /// rows together. `None`: every row is an image.
    pub groups: Option<&'a [usize]>,
    /// The plain row each row is a view of (`[data] augment`); `None`: every
    /// row is plain. Scores count plain rows only.
    pub base: Option<&'a [usize]>,
    /// Training and validation rows.
    pub train: &'a [usize],
    /// Validation rows.
    pub val: &'a [usize],
    /// Where models train.
    pub device: Device,
    /// Per head (config order): whether it is solved exactly (a separable
    /// least-squares head under `optimizer = "lbfgs"`), its weight decay
    /// then chosen along its whole path ([`super::exact`]).
    pub exact: &'a [bool],
}

/// (fit rows, score rows) pairs.
pub(super) type Plan = Vec<(Vec<usize>, Vec<usize>)>;

impl Problem<'_> {
    /// The (fit rows, score rows) pairs candidates are scored on, and how.
    pub(super) fn plan(&self) -> (Plan, String) {
        // Views are no more validation rows than their plain rows are.
        let plain = self.base.map_or(self.val.len(), |b| self.val.iter().filter(|&&r| b[r] == r).count());
        if plain >= MIN_VALIDATION_ROWS {
            return (
                vec![(self.train.to_vec(), self.val.to_vec())],
                format!("validation part ({plain} rows)"),
            );
        }
        let (k, folds) = self.folds();
        let plan = folds
            .iter()
            .map(|fold| {
                let held: std::collections::BTreeSet<usize> = fold.iter().copied().collect();
                let fit =
                    (0..self.train.len()).filter(|i| !held.contains(i)).map(|i| self.train[i]).collect();
                (fit, fold.iter().map(|&i| self.train[i]).collect())
            })
            .collect();
        (
            plan,
            format!(
                "{k}-fold cross-validation inside the training part (the validation part has {plain} rows, fewer than {MIN_VALIDATION_ROWS})"
            ),
        )
    }

    /// The folds' positions in `train`: stratified folds of the rows, or of
    /// the images (`groups`), each image's rows in its image's fold.
    fn folds(&self) -> (usize, Vec<Vec<usize>>) {
        let seed = self.config.training.seed;
        let Some(groups) = self.groups else {
            let k = FOLDS.min(self.train.len()).max(2);
            let strata: Vec<String> = self.train.iter().map(|&i| self.strata[i].clone()).collect();
            return (k, split::folds(&strata, k, seed));
        };
        let mut seen = std::collections::BTreeSet::new();
        let images: Vec<usize> = self.train.iter().map(|&r| groups[r]).filter(|&g| seen.insert(g)).collect();
        let k = FOLDS.min(images.len()).max(2);
        let fold_of: std::collections::BTreeMap<usize, usize> =
            super::parts::unit_folds(&images, self.train, |r| groups[r], self.strata, k, seed)
                .iter()
                .enumerate()
                .flat_map(|(f, fold)| fold.iter().map(|&j| (images[j], f)).collect::<Vec<_>>())
                .collect();
        let mut folds = vec![Vec::new(); k];
        for (i, &r) in self.train.iter().enumerate() {
            folds[fold_of[&groups[r]]].push(i);
        }
        (k, folds)
    }

    fn batch(&self, rows: &[usize]) -> Batch {
        let idx =
            Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(self.device);
        Batch {
            features: self.features.index_select(0, &idx),
            targets: self
                .targets
                .iter()
                .map(|t| Targets {
                    values: t.values.index_select(0, &idx),
                    mask: t.mask.index_select(0, &idx),
                })
                .collect(),
        }
    }

    /// Fits a model of the heads `heads` (config indices) with `routes` and
    /// `decay` on each plan's fit rows; per head, the mean (score, measure,
    /// loss) over the plan's score rows, and how the fits went. `warm`:
    /// variables to start from.
    #[allow(clippy::too_many_arguments)]
    fn fit_score(
        &self,
        heads: &[usize],
        trunk: bool,
        routes: &Routes,
        decay: &Decay,
        plan: &Plan,
        training: &TrainingConfig,
        warm: &mut Vec<Option<nn::VarStore>>,
    ) -> Result<(Vec<HeadScored>, FitSummary)> {
        let mut sums = vec![(0.0, String::new(), 0.0); heads.len()];
        let mut fits = FitSummary { iterations: 0.0, objective: Some(0.0), grad_max: None };
        let lbfgs = crate::train::LbfgsConfig {
            tolerance_change: training.lbfgs.tolerance_change.max(SELECTION_TOLERANCE),
            relative: true,
            ..training.lbfgs
        };
        let training =
            &TrainingConfig { epochs: training.epochs.min(SELECTION_ITERATIONS), lbfgs, ..training.clone() };
        // Each plan entry's model, built in order (seeded, or started from
        // the previous weight decay's solution) so that the result does not
        // depend on how the fits below are scheduled.
        let mut jobs = Vec::with_capacity(plan.len());
        for (p, (fit, _)) in plan.iter().enumerate() {
            tch::manual_seed(training.seed as i64);
            let mut vs = nn::VarStore::new(self.device);
            let configs: Vec<(&dyn HeadConfig, HeadState)> =
                heads.iter().map(|&h| (self.config.heads[h].as_ref(), self.states[h].clone())).collect();
            let model = MultiHeadModel::routed(
                &vs.root(),
                self.layout.dim(),
                if trunk { self.config.trunk.as_ref() } else { None },
                &configs,
                routes.clone(),
            )?;
            if let Some(Some(prev)) = warm.get(p) {
                vs.copy(prev).map_err(|e| Error::Training(e.to_string()))?;
            }
            let mut fit_batch = self.batch(fit);
            fit_batch.targets = heads.iter().map(|&h| self.take(&fit_batch.targets, h)).collect();
            jobs.push(FitJob { model, vs, batch: fit_batch });
        }
        let fitted = fit_jobs(jobs, training, decay);
        let n = plan.len() as f64;
        for (p, ((_, score), (job, outcome))) in plan.iter().zip(fitted).enumerate() {
            let outcome = outcome?;
            let FitJob { model, vs, .. } = job;
            fits.iterations += outcome.epochs_run as f64 / n;
            let objective = match outcome.solve.last() {
                Some(step) => Some(step.objective),
                None => outcome.history.last().map(|r| r.train_total),
            };
            fits.objective = fits.objective.zip(objective).map(|(sum, o)| sum + o / n);
            if let Some(step) = outcome.solve.last() {
                fits.grad_max = Some(fits.grad_max.unwrap_or(0.0).max(step.grad_max));
            }
            let mut score_batch = self.batch(score);
            score_batch.targets = heads.iter().map(|&h| self.take(&score_batch.targets, h)).collect();
            let (_, losses) = train::evaluate_losses(&model, &score_batch)?;
            let (subset, predictions) = self.scored(&model, &score_batch.features, score)?;
            for (j, &h) in heads.iter().enumerate() {
                let labels = subset.labels(self.config.heads[h].column())?;
                let s = model.heads()[j].score(&predictions[j], &labels)?;
                let (value, measure) = measure(&s).unwrap_or((losses[j], "loss"));
                sums[j].0 += value / n;
                sums[j].1 = measure.to_string();
                sums[j].2 += losses[j] / n;
            }
            if warm.len() <= p {
                warm.resize_with(p + 1, || None);
            }
            warm[p] = Some(vs);
        }
        Ok((sums, fits))
    }

    /// The predictions of `model` for the rows `rows` (their features
    /// `features`) that are scored, and those rows' part of the data set:
    /// one per plain row ([`Problem::scored_groups`]).
    fn scored(
        &self,
        model: &MultiHeadModel,
        features: &Tensor,
        rows: &[usize],
    ) -> Result<(Dataset, Vec<Vec<crate::head::Prediction>>)> {
        let Some((plain, views)) = self.scored_groups(rows) else {
            return Ok((self.data.subset(rows), super::evaluate::predict_features(model, features)?));
        };
        let outputs = tch::no_grad(|| model.forward_eval(features))?;
        let predictions = model
            .heads()
            .iter()
            .zip(&outputs)
            .map(|(h, o)| super::aggregate::average_outputs(h.as_ref(), o, &views))
            .collect::<Result<_>>()?;
        Ok((self.data.subset(&plain), predictions))
    }

    /// With views (`[data] augment`): the plain rows scored among `rows`,
    /// and per plain row the positions in `rows` that make its prediction
    /// (all its views with `[data] tta`, else itself). `None`: no views.
    pub(super) fn scored_groups(&self, rows: &[usize]) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
        let base = self.base?;
        Some(super::aggregate::view_groups(rows, base, self.config.data.tta))
    }

    fn take(&self, targets: &[Targets], head: usize) -> Targets {
        let t = &targets[head];
        Targets { values: t.values.shallow_clone(), mask: t.mask.shallow_clone() }
    }
}

/// One candidate fit of a plan entry: the model, its variables, its rows.
struct FitJob {
    model: MultiHeadModel,
    vs: nn::VarStore,
    batch: Batch,
}

/// Fits `jobs` ([`train::train_candidate`]), returning each with its outcome
/// in order. Several jobs (the folds of a cross-validation) run side by side,
/// one per intra-op thread the process has, each on one thread: the folds of
/// a small training part are too small for libtorch's threads to pay (see
/// `THREADED_WORK` in `train/solve.rs`), but independent of each other. Each fit is
/// computed the same way whichever worker runs it.
fn fit_jobs(
    jobs: Vec<FitJob>,
    training: &TrainingConfig,
    decay: &Decay,
) -> Vec<(FitJob, Result<train::TrainOutcome>)> {
    let fit = |job: &FitJob| train::train_candidate(&job.model, &job.vs, &job.batch, training, decay);
    let workers = (tch::get_num_threads().max(1) as usize).min(jobs.len());
    if workers < 2 {
        return jobs
            .into_iter()
            .map(|job| {
                let outcome = fit(&job);
                (job, outcome)
            })
            .collect();
    }
    // The workers set their own count; this thread's is restored after them.
    let _restore = train::OneThread::enter();
    let queue =
        std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<std::collections::VecDeque<_>>());
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                tch::set_num_threads(1);
                loop {
                    let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
                    let Some((i, job)) = next else { break };
                    let outcome = fit(&job);
                    done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((i, job, outcome));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    done.sort_by_key(|(i, _, _)| *i);
    done.into_iter().map(|(_, job, outcome)| (job, outcome)).collect()
}

/// A head's mean (score, measure, validation loss) over a plan's score rows.
type HeadScored = (f64, String, f64);

/// A head's score for choosing (lower is better): its error rate (discrete
/// heads, or a value head with a tolerance), else its MAE; `None` when it
/// has neither (the caller falls back to the loss).
pub(super) fn measure(score: &HeadScore) -> Option<(f64, &'static str)> {
    match (score.error_rate, score.metrics.mae()) {
        (Some(e), _) => Some((e, "error_rate")),
        (None, Some(m)) => Some((m, "mae")),
        (None, None) => None,
    }
}

/// The next weight decay past an end of the candidates tried (`downward`:
/// below the smallest, else above the largest), a decade on: `Some` when, in
/// any of `lists` (one list of candidates per head, or the joint one), the
/// best candidate is at that end and strictly better in score than the
/// candidate next to it.
///
/// ```
/// use furcate_core::run::choose::{past_the_end, Candidate};
///
/// let c = |weight_decay: f64, score: f64, loss: f64| Candidate {
///     taps: None, weight_decay, score, measure: "error_rate".into(), loss, solve: None,
/// };
/// // Errors still falling at the smallest decay: go on below it.
/// let falling = [c(1e-1, 0.5, 1.2), c(1e-3, 0.2, 0.6), c(1e-6, 0.06, 0.2)];
/// assert_eq!(past_the_end(&[&falling], true), Some(1e-7));
/// assert_eq!(past_the_end(&[&falling], false), None);
/// // No error anywhere: the lower loss at 1e-6 alone is no reason to go on.
/// let tied = [c(1e-1, 0.0, 0.1), c(1e-6, 0.0, 0.01)];
/// assert_eq!(past_the_end(&[&tied], true), None);
/// // Any head's list can ask for it; a best at the top goes up.
/// let top = [c(1e-1, 0.1, 0.3), c(1e-2, 0.2, 0.4)];
/// assert_eq!(past_the_end(&[&tied, &top], false), Some(1.0));
/// ```
pub fn past_the_end(lists: &[&[Candidate]], downward: bool) -> Option<f64> {
    let mut end = None;
    for list in lists {
        let mut sorted: Vec<&Candidate> = list.iter().collect();
        sorted.sort_by(|a, b| a.weight_decay.total_cmp(&b.weight_decay));
        if !downward {
            sorted.reverse();
        }
        let (Some(first), Some(second)) = (sorted.first(), sorted.get(1)) else { continue };
        let best = list.iter().reduce(|b, c| if better(c, b) { c } else { b });
        if best.is_some_and(|b| b.weight_decay == first.weight_decay) && first.score < second.score {
            end = Some(first.weight_decay);
        }
    }
    end.map(|wd| if downward { wd / 10.0 } else { wd * 10.0 })
}

fn better(a: &Candidate, b: &Candidate) -> bool {
    (a.score, a.loss) < (b.score, b.loss)
}

/// The variables of the first plan's fitted model, by name, restricted to `prefix`es.
fn snapshot(warm: &[Option<nn::VarStore>], prefixes: &[String]) -> Vec<(String, Tensor)> {
    let Some(Some(vs)) = warm.first() else { return Vec::new() };
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// What [`choose`] returns: the choices, and the fitted variables of the
/// chosen candidates (by `VarStore` name), from which the final training
/// starts: with a validation part the chosen candidate was fitted on exactly
/// the training rows, so the final solve starts at its optimum.
pub type Chosen = (Choices, Vec<(String, Tensor)>);

/// Starts the model in `vs` from the chosen candidates' variables (`Chosen`'s
/// second part): each variable of that name and shape takes its value.
pub fn apply_init(vs: &nn::VarStore, init: &[(String, Tensor)]) {
    tch::no_grad(|| {
        let vars = vs.variables();
        for (name, value) in init {
            if let Some(mut v) = vars.get(name).map(Tensor::shallow_clone) {
                if v.size() == value.size() {
                    v.copy_(&value.to_device(v.device()));
                }
            }
        }
    });
}

/// Makes the run's choices (see the module docs). Without a choice to make
/// (no `"auto"` taps, one weight decay) it only resolves the taps.
pub fn choose(problem: &Problem, progress: &mut dyn Progress) -> Result<Chosen> {
    let c = problem.config;
    let t = &c.training;
    let layout = problem.layout;
    let grid = {
        let mut g = t.weight_decay.values();
        // Largest first: each fit starts from the previous, more regular, solution.
        g.sort_by(|a, b| b.total_cmp(a));
        g
    };
    let has_trunk = c.trunk.is_some();
    let trunk_taps = c.trunk.as_ref().and_then(|tr| tr.taps.clone());
    let mut heads: Vec<HeadChoice> = c
        .heads
        .iter()
        .map(|h| HeadChoice {
            head: h.name().to_string(),
            taps: match h.taps() {
                Some(TapSelection::List(names)) => Some(names.clone()),
                _ => None,
            },
            auto_taps: matches!(h.taps(), Some(TapSelection::Auto)),
            weight_decay: grid[0],
            candidates: Vec::new(),
        })
        .collect();
    let mut choices = Choices {
        layout: Some(layout.clone()),
        trunk_taps: trunk_taps.clone(),
        weight_decay: grid[0],
        trunk_candidates: Vec::new(),
        heads: Vec::new(),
        scored_on: None,
    };
    let searching = grid.len() > 1;
    let auto_grid = t.weight_decay.is_auto();
    let auto: Vec<usize> = (0..heads.len()).filter(|&i| heads[i].auto_taps).collect();
    if auto.is_empty() && !searching {
        choices.heads = heads;
        return Ok((choices, Vec::new()));
    }
    let mut init: Vec<(String, Tensor)> = Vec::new();
    let (plan, scored_on) = problem.plan();
    choices.scored_on = Some(scored_on);
    let runs = layout.runs();
    let fits = auto.len() * runs.len() * grid.len() + usize::from(searching) * grid.len();
    progress.start("choosing taps and weight decay", fits as u64);
    let mut done = 0u64;
    // 1. Each "auto" head alone, on every candidate input, every weight decay.
    for &h in &auto {
        let mut best: Option<Candidate> = None;
        let mut best_vars = Vec::new();
        let prefix = vec![format!("heads.{}.", heads[h].head)];
        for run in runs.iter().filter(|_| problem.exact[h]) {
            for (wd, score, measure, loss) in
                problem.exact_path(h, Some(&layout.columns(run)), &grid, auto_grid)?
            {
                let cand = Candidate {
                    taps: Some(layout.label(run)),
                    weight_decay: wd,
                    score,
                    measure,
                    loss,
                    solve: None,
                };
                if best.as_ref().is_none_or(|b| better(&cand, b)) {
                    best = Some(cand.clone());
                }
                heads[h].candidates.push(cand);
            }
            done += grid.len() as u64;
            progress.advance(done, Some(&format!("{}: {} (exact)", heads[h].head, layout.label(run))));
        }
        for run in runs.iter().filter(|_| !problem.exact[h]) {
            let routes = Routes { trunk: None, heads: vec![Some(layout.columns(run))] };
            let mut warm = Vec::new();
            for &wd in &grid {
                let (s, fit) =
                    problem.fit_score(&[h], false, &routes, &Decay::uniform(wd), &plan, t, &mut warm)?;
                let cand = Candidate {
                    taps: Some(layout.label(run)),
                    weight_decay: wd,
                    score: s[0].0,
                    measure: s[0].1.clone(),
                    loss: s[0].2,
                    solve: Some(fit),
                };
                if best.as_ref().is_none_or(|b| better(&cand, b)) {
                    best = Some(cand.clone());
                    best_vars = snapshot(&warm, &prefix);
                }
                heads[h].candidates.push(cand);
                done += 1;
                progress.advance(done, Some(&format!("{}: {}", heads[h].head, layout.label(run))));
            }
        }
        let best = best.ok_or_else(|| Error::Training("no tap candidates".into()))?;
        init.extend(best_vars);
        heads[h].taps = best.taps.as_ref().map(|l| l.split('+').map(str::to_string).collect());
        heads[h].weight_decay = best.weight_decay;
    }
    // 2. The weight decay of the other heads (and the trunk), on their
    // inputs: exact heads along their paths, the others by L-BFGS fits.
    let fixed_routes = |heads: &[HeadChoice]| {
        Choices {
            layout: Some(layout.clone()),
            trunk_taps: trunk_taps.clone(),
            heads: heads.to_vec(),
            ..Default::default()
        }
        .routes(has_trunk)
    };
    let exact_rest: Vec<usize> =
        (0..heads.len()).filter(|&i| !heads[i].auto_taps && problem.exact[i] && searching).collect();
    for h in exact_rest {
        let columns = fixed_routes(&heads)?.heads[h].clone();
        let mut best: Option<Candidate> = None;
        for (wd, score, measure, loss) in problem.exact_path(h, columns.as_deref(), &grid, auto_grid)? {
            let cand = Candidate { taps: None, weight_decay: wd, score, measure, loss, solve: None };
            if best.as_ref().is_none_or(|b| better(&cand, b)) {
                best = Some(cand.clone());
            }
            heads[h].candidates.push(cand);
        }
        if let Some(b) = best {
            heads[h].weight_decay = b.weight_decay;
        }
    }
    let rest: Vec<usize> = (0..heads.len()).filter(|&i| !heads[i].auto_taps && !problem.exact[i]).collect();
    if searching && !rest.is_empty() {
        let layout_routes = fixed_routes(&heads)?;
        let routes = Routes {
            trunk: layout_routes.trunk.clone(),
            heads: rest.iter().map(|&i| layout_routes.heads[i].clone()).collect(),
        };
        let on_trunk = has_trunk && rest.iter().any(|&i| heads[i].taps.is_none());
        let mut warm = Vec::new();
        let mut per_head: Vec<Option<Candidate>> = vec![None; rest.len()];
        let mut per_head_vars: Vec<Vec<(String, Tensor)>> = rest.iter().map(|_| Vec::new()).collect();
        let mut joint: Option<Candidate> = None;
        let mut joint_vars = Vec::new();
        let mut trunk_candidates = Vec::new();
        let mut fit_decay = |wd: f64,
                             warm: &mut Vec<Option<nn::VarStore>>,
                             heads: &mut [HeadChoice],
                             trunk_candidates: &mut Vec<Candidate>| {
            let (s, fit) =
                problem.fit_score(&rest, has_trunk, &routes, &Decay::uniform(wd), &plan, t, warm)?;
            for (j, &h) in rest.iter().enumerate() {
                let cand = Candidate {
                    taps: None,
                    weight_decay: wd,
                    score: s[j].0,
                    measure: s[j].1.clone(),
                    loss: s[j].2,
                    solve: Some(fit),
                };
                if per_head[j].as_ref().is_none_or(|b| better(&cand, b)) {
                    per_head[j] = Some(cand.clone());
                    per_head_vars[j] = snapshot(warm, &[format!("heads.{}.", heads[h].head)]);
                }
                heads[h].candidates.push(cand);
            }
            // Jointly: the summed scores of the discrete heads, then the summed losses.
            let sum = |f: &dyn Fn(&(f64, String, f64)) -> f64| s.iter().map(f).sum::<f64>();
            let cand = Candidate {
                taps: None,
                weight_decay: wd,
                score: sum(&|x| if x.1 == "error_rate" { x.0 } else { 0.0 }),
                measure: "summed error_rate".into(),
                loss: sum(&|x| x.2),
                solve: Some(fit),
            };
            if joint.as_ref().is_none_or(|b| better(&cand, b)) {
                joint = Some(cand.clone());
                joint_vars = snapshot(warm, &["".to_string()]);
            }
            trunk_candidates.push(cand);
            Ok::<(), Error>(())
        };
        for &wd in &grid {
            fit_decay(wd, &mut warm, &mut heads, &mut trunk_candidates)?;
            done += 1;
            progress.advance(done, Some(&format!("weight decay {wd:e}")));
        }
        // `"auto"`: past an end of the grid while a head's best score (or
        // the trunk's joint one) sits there and is strictly better than its
        // neighbour's, a decade at a time, at most EXTEND_DECADES each way.
        // A tie (0 % errors everywhere, say) is no reason to go further.
        if auto_grid {
            for downward in [true, false] {
                let mut warm_end = if downward { std::mem::take(&mut warm) } else { Vec::new() };
                for _ in 0..crate::train::WeightDecay::EXTEND_DECADES {
                    let lists: Vec<&[Candidate]> = if on_trunk {
                        vec![trunk_candidates.as_slice()]
                    } else {
                        rest.iter().map(|&h| heads[h].candidates.as_slice()).collect()
                    };
                    let Some(next) = past_the_end(&lists, downward) else { break };
                    fit_decay(next, &mut warm_end, &mut heads, &mut trunk_candidates)?;
                    progress.advance(done, Some(&format!("weight decay {next:e} (past the grid's end)")));
                }
            }
        }
        if on_trunk {
            choices.trunk_candidates = trunk_candidates;
            let wd = joint.map(|j| j.weight_decay).unwrap_or(grid[0]);
            choices.weight_decay = wd;
            for &h in &rest {
                heads[h].weight_decay = wd;
            }
            init.extend(joint_vars);
        } else {
            init.extend(per_head_vars.into_iter().flatten());
            for (j, &h) in rest.iter().enumerate() {
                if let Some(b) = &per_head[j] {
                    heads[h].weight_decay = b.weight_decay;
                }
            }
        }
    }
    progress.finish();
    choices.heads = heads;
    Ok((choices, init))
}
