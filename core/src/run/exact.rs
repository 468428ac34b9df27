//! The weight decay of a head solved exactly (a separable head that is
//! least squares on its input, [`crate::head::PropertyHead::least_squares`]):
//! its whole path scored at the cost of one decomposition
//! ([`crate::train::ridge`]).
//!
//! Rows that are images are scored by exact leave-one-out over the training
//! and validation rows (as scikit-learn's `RidgeCV` over all it is given; the
//! final solve fits both); an image with `[data] augment` views is left out
//! with its views (exact leave-group-out, [`RidgePath::loo_group_residuals`]),
//! since a view of the left-out image would flatter it, and is scored once
//! (its plain row, or with `[data] tta` the mean over its views). Rows that
//! are tiles (`[data] tile`)
//! by the run's plan (the validation part, or k folds of whole images),
//! since a left-out tile's neighbours from the same image would flatter it.
//! With `weight_decay = "auto"` the path is [`AUTO_PATH`], extended by
//! [`EXTEND_DECADES`] wherever its best value sits at an end.

use tch::{nn, Device, Kind, Tensor};

use super::aggregate::average_outputs;
use super::choose::{measure, Problem};
use crate::config::{OptimizerKind, RunConfig};
use crate::data::Dataset;
use crate::model::{MultiHeadModel, Routes};
use crate::train::ridge::{self, RidgePath};
use crate::Result;

/// `"auto"`'s path for an exact head: `10^from .. 10^to`, `per_decade` values a decade.
pub const AUTO_PATH: (i32, i32, usize) = (-10, 3, 3);

/// Decades added at an end of the path where the best value sits (at most twice each way).
pub const EXTEND_DECADES: i32 = crate::train::WeightDecay::EXTEND_DECADES;

/// `10^from .. 10^to` (inclusive), `per_decade` values a decade, smallest first.
fn decades(from: i32, to: i32, per_decade: usize) -> Vec<f64> {
    let steps = ((to - from) as usize) * per_decade;
    (0..=steps).map(|i| 10f64.powf(from as f64 + i as f64 / per_decade as f64)).collect()
}

/// Per head of `model` (built from `config`, heads in config order):
/// whether it is solved exactly, a separable least-squares head under
/// `optimizer = "lbfgs"` ([`Problem::exact`]).
pub fn exact_heads(config: &RunConfig, model: &MultiHeadModel) -> Vec<bool> {
    let lbfgs = config.training.optimizer == OptimizerKind::Lbfgs && model.heads_are_separable();
    model.heads().iter().map(|h| lbfgs && h.least_squares().is_some()).collect()
}

/// One weight decay's score: (weight decay, score, measure, loss).
pub(super) type PathPoint = (f64, f64, String, f64);

impl Problem<'_> {
    /// Scores head `h` (config index) reading `columns` (`None`: every
    /// column) at each weight decay of `grid`, or along the `"auto"` path
    /// when `auto`; every point, in the order tried.
    pub(super) fn exact_path(
        &self,
        h: usize,
        columns: Option<&[(i64, i64)]>,
        grid: &[f64],
        auto: bool,
    ) -> Result<Vec<PathPoint>> {
        let vs = nn::VarStore::new(Device::Cpu);
        let head_config = self.config.heads[h].as_ref();
        let model = MultiHeadModel::routed(
            &vs.root(),
            self.layout.dim(),
            None,
            &[(head_config, self.states[h].clone())],
            Routes { trunk: None, heads: vec![columns.map(<[_]>::to_vec)] },
        )?;
        let input = model.head_input(0, self.features).unwrap_or_else(|| self.features.shallow_clone());
        let scorer = Scorer { problem: self, model: &model, h, input: &input };
        let mut grid = if auto {
            let (from, to, per) = AUTO_PATH;
            decades(from, to, per)
        } else {
            grid.to_vec()
        };
        let mut points: Vec<PathPoint> = Vec::new();
        let (mut low, mut high) = (0, 0);
        loop {
            let tried: Vec<f64> = points.iter().map(|p| p.0).collect();
            let new: Vec<f64> = grid.iter().copied().filter(|g| !tried.contains(g)).collect();
            points.extend(scorer.score(&new)?);
            if !auto {
                return Ok(points);
            }
            let best = points
                .iter()
                .min_by(|a, b| (a.1, a.3).partial_cmp(&(b.1, b.3)).unwrap_or(std::cmp::Ordering::Equal))
                .map(|p| p.0);
            let smallest = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let largest = points.iter().map(|p| p.0).fold(0.0, f64::max);
            let (_, _, per) = AUTO_PATH;
            grid = if best == Some(smallest) && low < 2 {
                low += 1;
                let from = smallest.log10().round() as i32;
                decades(from - EXTEND_DECADES, from, per)
            } else if best == Some(largest) && high < 2 {
                high += 1;
                let to = largest.log10().round() as i32;
                decades(to, to + EXTEND_DECADES, per)
            } else {
                return Ok(points);
            };
        }
    }
}

/// Scores one head's exact solutions.
struct Scorer<'a> {
    problem: &'a Problem<'a>,
    model: &'a MultiHeadModel,
    h: usize,
    input: &'a Tensor,
}

impl Scorer<'_> {
    /// The rows of `rows` whose label is present, with their features and
    /// targets (`f64`).
    fn labelled(&self, rows: &[usize]) -> Result<(Vec<usize>, Tensor, Tensor)> {
        let t = &self.problem.targets[self.h];
        let mask: Vec<bool> = Vec::<bool>::try_from(&t.mask.to_device(Device::Cpu))?;
        let kept: Vec<usize> = rows.iter().copied().filter(|&r| mask[r]).collect();
        let idx = Tensor::from_slice(&kept.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let select =
            |t: &Tensor| t.f_to_device(Device::Cpu)?.f_index_select(0, &idx)?.f_to_kind(Kind::Double);
        let y = select(&t.values)?;
        let y = if y.dim() == 1 { y.f_unsqueeze(1)? } else { y };
        let (x, y) = (select(self.input)?, y);
        Ok((kept, x, y))
    }

    /// The head's (score, measure) of outputs `output` (learned units) on the
    /// rows `rows` (scored per plain row, [`Problem::scored_groups`]), and
    /// the mean squared residual against `target`.
    fn measure(&self, rows: &[usize], output: &Tensor, target: &Tensor) -> Result<(f64, &'static str, f64)> {
        let head = &self.model.heads()[0];
        let (data, predictions): (Dataset, _) = match self.problem.scored_groups(rows) {
            Some((plain, views)) => {
                (self.problem.data.subset(&plain), average_outputs(head.as_ref(), output, &views)?)
            }
            None => (self.problem.data.subset(rows), head.decode(output)?),
        };
        let labels = data.labels(self.problem.config.heads[self.h].column())?;
        let loss = (output - target).square().mean(Kind::Double).double_value(&[]);
        let (score, measure) = measure(&head.score(&predictions, &labels)?).unwrap_or((loss, "loss"));
        Ok((score, measure, loss))
    }

    fn alpha(&self, weight_decay: f64, rows: usize, outputs: i64) -> f64 {
        let weight = self.problem.config.heads[self.h].loss_weight();
        ridge::alpha(weight_decay, rows * outputs as usize, weight)
    }

    /// Every weight decay of `grid` scored.
    fn score(&self, grid: &[f64]) -> Result<Vec<PathPoint>> {
        let p = self.problem;
        if p.groups.is_none() || p.config.data.tile.is_none() {
            // The final solve fits the training and validation rows together: so does leave-one-out.
            let all: Vec<usize> = p.train.iter().chain(p.val).copied().collect();
            let (rows, x, y) = self.labelled(&all)?;
            let path = RidgePath::new(&x, &y)?;
            // An image's rows (it and its views) are left out together.
            let groups = p.groups.map(|g| {
                let mut at = std::collections::HashMap::new();
                let mut groups: Vec<Vec<usize>> = Vec::new();
                for (i, &r) in rows.iter().enumerate() {
                    let k = *at.entry(g[r]).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[k].push(i);
                }
                groups
            });
            return grid
                .iter()
                .map(|&wd| {
                    let alpha = self.alpha(wd, rows.len(), y.size()[1]);
                    let residual = match &groups {
                        Some(g) => path.loo_group_residuals(alpha, g)?,
                        None => path.loo_residuals(alpha),
                    };
                    let (score, m, loss) = self.measure(&rows, &(&y - residual), &y)?;
                    Ok((wd, score, format!("loo_{m}"), loss))
                })
                .collect();
        }
        let (plan, _) = p.plan();
        let mut sums = vec![(0.0, String::new(), 0.0); grid.len()];
        for (fit, held) in &plan {
            let (fit_rows, x, y) = self.labelled(fit)?;
            let (held_rows, xs, ys) = self.labelled(held)?;
            let path = RidgePath::new(&x, &y)?;
            for (i, &wd) in grid.iter().enumerate() {
                let (w, b) = path.solve(self.alpha(wd, fit_rows.len(), y.size()[1]));
                let output = xs.matmul(&w.transpose(0, 1)) + b;
                let (score, m, loss) = self.measure(&held_rows, &output, &ys)?;
                sums[i].0 += score / plan.len() as f64;
                sums[i].1 = m.to_string();
                sums[i].2 += loss / plan.len() as f64;
            }
        }
        Ok(grid.iter().zip(sums).map(|(&wd, (s, m, l))| (wd, s, m, l)).collect())
    }
}
