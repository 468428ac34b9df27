//! Label spreading on a k-nearest-neighbour graph (Zhou et al., "Learning
//! with local and global consistency", NIPS 2003): the semi-supervised step
//! of `[training] semi_supervised = "propagation"`.
//!
//! Every point (labelled or not) is a node; each is joined to its
//! `neighbours` nearest points with weight `exp(-d² / (σ_i σ_j))`, where
//! `σ_i` is the distance to the node's own `neighbours`-th neighbour (a local
//! scale, so dense and sparse regions join alike), and the graph is made
//! symmetric. With `S = D^-1/2 W D^-1/2` and the labelled nodes' one-hot rows
//! `Y`, the class scores are the fixed point of `F = α S F + (1 - α) Y`,
//! reached by iteration. Each class's column is then divided by its total
//! (class-mass normalisation, so a class with more labelled seeds does not
//! flood the graph), and each row is normalised into probabilities.
//!
//! ```
//! use furcate_core::train::propagate::{spread, PropagationConfig};
//! use tch::Tensor;
//!
//! // Two clusters on a line, one labelled point in each.
//! let x = Tensor::from_slice(&[0.0f64, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 5.3]).view([8, 1]);
//! let cfg = PropagationConfig { neighbours: 2, ..PropagationConfig::default() };
//! let spread = spread(&x, &[(0, 0), (7, 1)], 2, &cfg).unwrap();
//! assert_eq!(spread.labels(), vec![0, 0, 0, 0, 1, 1, 1, 1]);
//! ```

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// Rows of the distance matrix computed at once when finding neighbours
/// (bounds the memory to `CHUNK x N` values).
const CHUNK: i64 = 1024;

/// `[training.propagation]`: the graph and the spreading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropagationConfig {
    /// Neighbours joined to each point. Default 20.
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// How far labels spread, in (0, 1): the weight of the neighbours'
    /// scores against a node's own seed label. Default 0.99.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Rounds of spreading and refitting: each round spreads the labels over
    /// the graph of the heads' logits from the previous fit. Default 2.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
    /// With `semi_supervised = "auto"`: the folds of labelled images whose
    /// labels are hidden in turn to decide, per class head, whether
    /// propagation helps. Default 5 (with 3, a fold's fits have a third fewer
    /// labels than the run's, which favours propagation: on the hard set at 280
    /// labels, 3 folds chose it on 2 of 3 seeds where it cost 1.4 points).
    #[serde(default = "default_folds")]
    pub folds: usize,
}

fn default_neighbours() -> usize {
    20
}
fn default_alpha() -> f64 {
    0.99
}
fn default_rounds() -> usize {
    2
}
fn default_folds() -> usize {
    5
}

impl Default for PropagationConfig {
    fn default() -> Self {
        PropagationConfig {
            neighbours: default_neighbours(),
            alpha: default_alpha(),
            rounds: default_rounds(),
            folds: default_folds(),
        }
    }
}

impl PropagationConfig {
    /// Whether the default settings are used (for skipping them when saved).
    pub fn is_default(&self) -> bool {
        *self == PropagationConfig::default()
    }

    /// Checks the values; an error is `(key, message)`.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.neighbours == 0 {
            return Err(("neighbours", "training.propagation.neighbours must be at least 1".into()));
        }
        if self.folds < 2 {
            return Err((
                "folds",
                format!("training.propagation.folds = {}: must be at least 2", self.folds),
            ));
        }
        if self.rounds == 0 {
            return Err(("rounds", "training.propagation.rounds must be at least 1".into()));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err((
                "alpha",
                format!("training.propagation.alpha = {}: must lie strictly between 0 and 1", self.alpha),
            ));
        }
        Ok(())
    }
}

/// Iterations at most; the spreading stops earlier when no score moves by
/// more than [`TOLERANCE`].
const MAX_ITERATIONS: usize = 1000;
/// Largest change of a score at which the spreading has converged.
const TOLERANCE: f64 = 1e-9;

/// The result of [`spread`]: per point, each class's probability.
#[derive(Debug, Clone)]
pub struct Spread {
    /// Row-major `[N, classes]`, each row summing to 1 (uniform for a point
    /// no label reached).
    pub probabilities: Vec<f64>,
    /// Number of classes.
    pub classes: usize,
    /// Iterations run.
    pub iterations: usize,
}

impl Spread {
    /// The most probable class of each point.
    pub fn labels(&self) -> Vec<usize> {
        self.probabilities
            .chunks(self.classes)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |best, (k, &p)| if p > best.1 { (k, p) } else { best })
                    .0
            })
            .collect()
    }

    /// The probability of each point's most probable class.
    pub fn confidence(&self) -> Vec<f64> {
        self.probabilities.chunks(self.classes).map(|row| row.iter().copied().fold(0.0, f64::max)).collect()
    }
}

/// Spreads the labels `seeds` (`(point, class)`) over the points, classes
/// `0..classes`. The points should be on comparable scales (standardised).
///
/// # Shapes
/// `points`: `[N, D]`, any float kind, CPU -> [`Spread`] of `N x classes`.
pub fn spread(
    points: &Tensor,
    seeds: &[(usize, usize)],
    classes: usize,
    cfg: &PropagationConfig,
) -> Result<Spread> {
    cfg.validate().map_err(|(_, m)| Error::Invalid(m))?;
    let n = points.size().first().copied().unwrap_or(0) as usize;
    if classes == 0 || seeds.is_empty() {
        return Err(Error::Invalid("label propagation needs at least one labelled point".into()));
    }
    if let Some(&(p, c)) = seeds.iter().find(|&&(p, c)| p >= n || c >= classes) {
        return Err(Error::Invalid(format!(
            "label propagation: seed ({p}, class {c}) outside {n} points x {classes} classes"
        )));
    }
    let graph = Graph::nearest(points, cfg.neighbours.min(n.saturating_sub(1)).max(1))?;
    let mut seed = vec![0.0; n * classes];
    for &(p, c) in seeds {
        seed[p * classes + c] = 1.0;
    }
    let alpha = cfg.alpha;
    let mut f = seed.clone();
    let mut next = vec![0.0; n * classes];
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let mut change: f64 = 0.0;
        for i in 0..n {
            let row = &mut next[i * classes..(i + 1) * classes];
            for (k, v) in row.iter_mut().enumerate() {
                *v = (1.0 - alpha) * seed[i * classes + k];
            }
            for &(j, w) in &graph.edges[i] {
                for k in 0..classes {
                    row[k] += alpha * w * f[j * classes + k];
                }
            }
            for k in 0..classes {
                change = change.max((row[k] - f[i * classes + k]).abs());
            }
        }
        std::mem::swap(&mut f, &mut next);
        if change < TOLERANCE {
            break;
        }
    }
    // Class-mass normalisation, then probabilities per row.
    let mass: Vec<f64> = (0..classes).map(|k| (0..n).map(|i| f[i * classes + k]).sum()).collect();
    for i in 0..n {
        let row = &mut f[i * classes..(i + 1) * classes];
        for (k, v) in row.iter_mut().enumerate() {
            *v = if mass[k] > 0.0 { *v / mass[k] } else { 0.0 };
        }
        let total: f64 = row.iter().sum();
        for v in row.iter_mut() {
            *v = if total > 0.0 { *v / total } else { 1.0 / classes as f64 };
        }
    }
    Ok(Spread { probabilities: f, classes, iterations })
}

/// The symmetric, normalised k-nearest-neighbour graph: per node, its
/// neighbours and the edge weights of `D^-1/2 W D^-1/2`.
struct Graph {
    edges: Vec<Vec<(usize, f64)>>,
}

impl Graph {
    fn nearest(points: &Tensor, k: usize) -> Result<Graph> {
        let x = points.f_to_kind(Kind::Double)?;
        let n = x.size()[0];
        let norms = x.f_square()?.f_sum_dim_intlist(1, false, Kind::Double)?;
        let mut neighbours: Vec<Vec<(usize, f64)>> = Vec::with_capacity(n as usize);
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let rows = x.f_narrow(0, start, len)?;
            // |a - b|² = |a|² + |b|² - 2 a·b, clamped at 0 against rounding.
            let d2 = norms
                .f_narrow(0, start, len)?
                .f_unsqueeze(1)?
                .f_add(&norms.f_unsqueeze(0)?)?
                .f_sub(&rows.f_matmul(&x.f_transpose(0, 1)?)?.f_mul_scalar(2.0)?)?
                .f_clamp_min(0.0)?;
            // A point is not its own neighbour.
            let own = Tensor::f_arange_start(start, start + len, (Kind::Int64, tch::Device::Cpu))?;
            let mut d2 = d2;
            let d2 = d2.f_index_put_(
                &[Some(Tensor::f_arange(len, (Kind::Int64, tch::Device::Cpu))?), Some(own)],
                &Tensor::from(f64::INFINITY),
                false,
            )?;
            let (values, indices) = d2.f_topk(k as i64, 1, false, true)?;
            let values = Vec::<f64>::try_from(values.f_flatten(0, -1)?)?;
            let indices = Vec::<i64>::try_from(indices.f_flatten(0, -1)?)?;
            for r in 0..len as usize {
                neighbours.push(
                    (0..k).map(|c| (indices[r * k + c] as usize, values[r * k + c].max(0.0))).collect(),
                );
            }
            start += len;
        }
        // Local scale: the distance to the k-th neighbour (never 0).
        let scale: Vec<f64> = neighbours
            .iter()
            .map(|nb| nb.iter().map(|&(_, d2)| d2).fold(0.0, f64::max).sqrt().max(f64::MIN_POSITIVE))
            .collect();
        let mut edges: Vec<std::collections::BTreeMap<usize, f64>> = vec![Default::default(); n as usize];
        for (i, nb) in neighbours.iter().enumerate() {
            for &(j, d2) in nb {
                let w = (-d2 / (scale[i] * scale[j])).exp();
                // W = max(W, Wᵀ).
                for (a, b) in [(i, j), (j, i)] {
                    let e = edges[a].entry(b).or_insert(0.0);
                    *e = e.max(w);
                }
            }
        }
        let degree: Vec<f64> = edges.iter().map(|e| e.values().sum::<f64>()).collect();
        let edges = edges
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                e.into_iter()
                    .map(|(j, w)| (j, w / (degree[i] * degree[j]).sqrt().max(f64::MIN_POSITIVE)))
                    .collect()
            })
            .collect();
        Ok(Graph { edges })
    }
}
