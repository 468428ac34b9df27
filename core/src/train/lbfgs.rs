//! Full-batch L-BFGS with a strong-Wolfe line search, following the algorithm
//! of `torch.optim.LBFGS` (`line_search_fn = "strong_wolfe"`).
//!
//! The search direction comes from the two-loop recursion over the last
//! `history_size` correction pairs `(s, y)` (Nocedal & Wright, *Numerical
//! Optimization*, 2nd ed., algorithms 7.4 and 7.5), with the initial inverse
//! Hessian `H0 = (s·y / y·y) I` of the newest pair; a pair with `y·s <= 1e-10`
//! is not stored. The step length comes from a line search satisfying the
//! strong Wolfe conditions (`c1 = 1e-4`, `c2 = 0.9`), bracketing then zooming
//! with safeguarded cubic interpolation (algorithms 3.5 and 3.6). The first
//! trial step is `min(1, 1/|g|_1) * lr` on the first iteration and `lr` after.
//!
//! The objective and its gradient are evaluated on the variables' device,
//! the gradient flattened and concatenated in the order of the variables
//! (`f64` when any variable is `f64`, else `f32`). The optimiser's own
//! vector arithmetic (the correction pairs, the two-loop recursion, the
//! tests: `4 x history_size` dot products and updates per iteration) is on
//! the host in `f64` for at most [`HOST_VARIABLES`] variables on the CPU,
//! else on that flat tensor. A trial point whose objective or gradient is
//! not finite counts as a failed trial: the line search shrinks the step by
//! bisection.
//!
//! ```
//! use furcate_core::train::{Lbfgs, LbfgsConfig};
//! use tch::{Kind, Tensor};
//!
//! // f(x) = sum((x - 3)^2), minimum at x = 3.
//! let x = Tensor::zeros([4], (Kind::Double, tch::Device::Cpu)).set_requires_grad(true);
//! let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, LbfgsConfig::default());
//! let mut f = || -> furcate_core::Result<f64> {
//!     let mut g = x.grad();
//!     if g.defined() {
//!         let _ = g.zero_();
//!     }
//!     let loss = (&x - 3.0).square().sum(Kind::Double);
//!     loss.backward();
//!     Ok(loss.double_value(&[]))
//! };
//! let mut converged = None;
//! for _ in 0..10 {
//!     let it = opt.iterate(&mut f)?;
//!     if it.converged.is_some() {
//!         converged = it.converged;
//!         break;
//!     }
//! }
//! assert!(converged.is_some());
//! let err = (&x - 3.0).abs().max().double_value(&[]);
//! assert!(err < 1e-6, "{err}");
//! # Ok::<(), furcate_core::Error>(())
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// Sufficient-decrease (Armijo) constant of the strong Wolfe conditions.
const C1: f64 = 1e-4;
/// Curvature constant of the strong Wolfe conditions.
const C2: f64 = 0.9;
/// Correction pairs with `y·s` at most this are not stored.
const MIN_CURVATURE: f64 = 1e-10;

/// The most variables (on the CPU) for which the optimiser's own vector
/// arithmetic runs on the host: as libtorch operations on a class head's
/// thousand variables it costs more in dispatch (microseconds per
/// operation) than in arithmetic (nearly half the solving time of a 5-fold
/// choice at 140 rows, measured), while a 1000-unit trunk's 1.5 x 10^5
/// variables are faster as vectorised tensors (its Table 3 points took 1.5x
/// longer on the host: 38 s against 24 s). Around 10^4 the two cost about
/// the same.
pub const HOST_VARIABLES: i64 = 1 << 13;

/// A flat vector of the optimiser's own arithmetic: on the host in `f64`
/// (small problems), or a tensor on the variables' device. The two kinds
/// never meet in one [`Lbfgs`]; if they did, the tensor is read to the host.
#[derive(Debug)]
enum Flat {
    Host(Vec<f64>),
    Device(Tensor),
}

impl Flat {
    /// `t` (flat) as the kind `host` asks for; a tensor is shared, not copied.
    fn of(t: &Tensor, host: bool) -> Result<Flat> {
        Ok(if host { Flat::Host(to_host(t)?) } else { Flat::Device(t.shallow_clone()) })
    }

    /// The same values: a copy on the host, a shared tensor (never written in place).
    fn share(&self) -> Flat {
        match self {
            Flat::Host(v) => Flat::Host(v.clone()),
            Flat::Device(t) => Flat::Device(t.shallow_clone()),
        }
    }

    /// As a tensor of `kind` on `device`.
    fn tensor(&self, kind: Kind, device: tch::Device) -> Result<Tensor> {
        Ok(match self {
            Flat::Host(v) => Tensor::f_from_slice(v)?.f_to_kind(kind)?.f_to_device(device)?,
            Flat::Device(t) => t.shallow_clone(),
        })
    }

    fn host(&self) -> std::borrow::Cow<'_, [f64]> {
        match self {
            Flat::Host(v) => std::borrow::Cow::Borrowed(v),
            Flat::Device(t) => {
                std::borrow::Cow::Owned(to_host(t).unwrap_or_else(|_| vec![f64::NAN; t.numel()]))
            }
        }
    }

    fn dot(&self, other: &Flat) -> f64 {
        match (self, other) {
            (Flat::Device(a), Flat::Device(b)) => a.dot(b).double_value(&[]),
            _ => self.host().iter().zip(other.host().iter()).map(|(a, b)| a * b).sum(),
        }
    }

    /// The largest absolute entry (NaN when there is one).
    fn max_abs(&self) -> f64 {
        match self {
            Flat::Device(t) => t.abs().max().double_value(&[]),
            Flat::Host(v) => {
                v.iter().try_fold(0.0f64, |m, x| (!x.is_nan()).then(|| m.max(x.abs()))).unwrap_or(f64::NAN)
            }
        }
    }

    fn abs_sum(&self) -> f64 {
        match self {
            Flat::Device(t) => t.abs().sum(Kind::Double).double_value(&[]),
            Flat::Host(v) => v.iter().map(|x| x.abs()).sum(),
        }
    }

    /// A new vector `a x`.
    fn scaled(&self, a: f64) -> Flat {
        match self {
            Flat::Device(t) => Flat::Device(t * a),
            Flat::Host(v) => Flat::Host(v.iter().map(|x| x * a).collect()),
        }
    }

    /// A new vector `self - other`.
    fn minus(&self, other: &Flat) -> Flat {
        match (self, other) {
            (Flat::Device(a), Flat::Device(b)) => Flat::Device(a - b),
            _ => Flat::Host(self.host().iter().zip(other.host().iter()).map(|(a, b)| a - b).collect()),
        }
    }

    /// `self += a x`, in place.
    fn add_scaled(&mut self, a: f64, x: &Flat) {
        match (self, x) {
            (Flat::Device(t), Flat::Device(x)) => {
                let _ = t.g_add_(&(x * a));
            }
            (Flat::Host(v), x) => v.iter_mut().zip(x.host().iter()).for_each(|(v, x)| *v += a * x),
            (this @ Flat::Device(_), x) => {
                let mut v = this.host().into_owned();
                v.iter_mut().zip(x.host().iter()).for_each(|(v, x)| *v += a * x);
                *this = Flat::Host(v);
            }
        }
    }
}

/// Settings of L-BFGS (`[training.lbfgs]` in TOML).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbfgsConfig {
    /// Correction pairs kept (default 20).
    #[serde(default = "default_history_size")]
    pub history_size: usize,
    /// Stop when the largest absolute gradient entry is at most this (default 1e-7).
    #[serde(default = "default_tolerance_grad")]
    pub tolerance_grad: f64,
    /// Stop when the step or the loss change is at most this (default 1e-9).
    #[serde(default = "default_tolerance_change")]
    pub tolerance_change: f64,
    /// Most function evaluations per iteration inside the line search (default 25).
    #[serde(default = "default_max_line_search")]
    pub max_line_search: usize,
    /// Whether `tolerance_grad` and the loss-change test of `tolerance_change`
    /// are relative to the objective's scale, `|f|` at the start point
    /// (default true): a head whose loss starts at 1e-6 is then solved as far
    /// as one whose loss starts at 1. `false`: absolute, as `torch.optim.LBFGS`.
    #[serde(default = "default_relative")]
    pub relative: bool,
}

fn default_relative() -> bool {
    true
}

fn default_history_size() -> usize {
    20
}

fn default_tolerance_grad() -> f64 {
    1e-7
}

fn default_tolerance_change() -> f64 {
    1e-9
}

fn default_max_line_search() -> usize {
    25
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            history_size: default_history_size(),
            tolerance_grad: default_tolerance_grad(),
            tolerance_change: default_tolerance_change(),
            max_line_search: default_max_line_search(),
            relative: default_relative(),
        }
    }
}

/// Which stopping test fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Convergence {
    /// The largest absolute gradient entry is at most `tolerance_grad`: a
    /// stationary point (the minimum, for a convex objective).
    Gradient,
    /// The largest absolute entry of the step just taken is at most
    /// `tolerance_change`: the line search could not move the variables.
    Step,
    /// The objective changed by less than `tolerance_change` in the last
    /// iteration, or the predicted change along the search direction
    /// (`-g·d`) is below `tolerance_change` so that no step was taken.
    LossChange,
}

/// What one [`Lbfgs::iterate`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iteration {
    /// Objective at the new point.
    pub loss: f64,
    /// Largest absolute gradient entry at the new point.
    pub grad_max: f64,
    /// Function evaluations this iteration took.
    pub evaluations: usize,
    /// Set when the run has converged (the caller stops).
    pub converged: Option<Convergence>,
}

/// The objective and flat gradient at the current point (the tensor, and
/// as the optimiser's [`Flat`]).
#[derive(Debug)]
struct Point {
    loss: f64,
    grad: Tensor,
    flat: Flat,
}

/// One correction pair and `1 / y·s`.
#[derive(Debug)]
struct Pair {
    s: Flat,
    y: Flat,
    rho: f64,
}

/// Full-batch L-BFGS over a fixed, ordered list of variables.
///
/// The state (curvature pairs, the objective and gradient at the current
/// point) carries over between [`Lbfgs::iterate`] calls, so the variables must
/// only be moved by `iterate`; after changing them otherwise (restoring a
/// checkpoint, say) call [`Lbfgs::reset`].
#[derive(Debug)]
pub struct Lbfgs {
    vars: Vec<Tensor>,
    numels: Vec<i64>,
    kind: Kind,
    /// Whether the optimiser's arithmetic is on the host ([`HOST_VARIABLES`]).
    host: bool,
    lr: f64,
    config: LbfgsConfig,
    history: VecDeque<Pair>,
    h_diag: f64,
    /// Whether the next iteration is the first since the start or a reset.
    fresh: bool,
    /// What the gradient and loss-change tolerances are multiplied by: `|f|`
    /// at the start point with `relative`, else 1.
    scale: f64,
    current: Option<Point>,
    iterations: usize,
    evaluations: usize,
}

impl Lbfgs {
    /// L-BFGS over `vars` (their order is the order of the flat vector). `lr`
    /// scales steps as torch's `lr` (the trainer passes 1.0).
    pub fn new(vars: Vec<Tensor>, lr: f64, config: LbfgsConfig) -> Self {
        let numels: Vec<i64> = vars.iter().map(|v| v.numel() as i64).collect();
        let kind = if vars.iter().any(|v| v.kind() == Kind::Double) { Kind::Double } else { Kind::Float };
        let host = numels.iter().sum::<i64>() <= HOST_VARIABLES
            && vars.iter().all(|v| v.device() == tch::Device::Cpu);
        Lbfgs {
            vars,
            numels,
            kind,
            host,
            lr,
            config,
            history: VecDeque::new(),
            h_diag: 1.0,
            fresh: true,
            scale: 1.0,
            current: None,
            iterations: 0,
            evaluations: 0,
        }
    }

    /// One iteration (torch's `step` with `max_iter = 1`, but the state
    /// carries over between calls): a search direction, a line search along
    /// it, and the move to the point it accepts.
    ///
    /// `f` must zero the variables' gradients, compute the objective, call
    /// `backward()`, and return the objective's value (everything the
    /// gradient is of, penalties included); its errors are propagated, with
    /// the variables back at the last accepted point. The first call (and the
    /// first after [`Lbfgs::reset`]) evaluates `f` once at the start point as
    /// well; if the gradient there is already at most `tolerance_grad`, it
    /// returns [`Convergence::Gradient`] without moving. After the call the
    /// variables' `.grad()` is that of the last evaluation, which need not be
    /// the accepted point.
    ///
    /// # Errors
    ///
    /// [`Error::Training`] when the objective or gradient is not finite at the
    /// start point, or when no trial of a line search had a finite objective;
    /// [`Error::Invalid`] when there are no variables; and whatever `f` fails with.
    pub fn iterate(&mut self, f: &mut dyn FnMut() -> Result<f64>) -> Result<Iteration> {
        if self.vars.is_empty() {
            return Err(Error::Invalid("L-BFGS needs at least one variable".into()));
        }
        let mut evaluations = 0;
        if self.current.is_none() {
            let loss = f();
            evaluations += 1;
            self.evaluations += 1;
            let loss = loss?;
            let grad = self.flat_grad();
            let flat = Flat::of(&grad, self.host)?;
            let grad_max = flat.max_abs();
            if !loss.is_finite() {
                return Err(Error::Training(format!("the objective is {loss} at the start point")));
            }
            if !grad_max.is_finite() {
                return Err(Error::Training(format!(
                    "the gradient of the objective is not finite at the start point (objective {loss})"
                )));
            }
            if self.config.relative {
                self.scale = loss.abs().max(f64::MIN_POSITIVE);
            }
            self.current = Some(Point { loss, grad, flat });
        }
        let (tol_grad, tol_change) =
            (self.config.tolerance_grad * self.scale, self.config.tolerance_change * self.scale);
        let (loss, grad, g) = {
            let p = self.current.as_ref().expect("set above");
            (p.loss, p.grad.shallow_clone(), p.flat.share())
        };
        let grad_max = g.max_abs();
        if grad_max <= tol_grad {
            return Ok(Iteration { loss, grad_max, evaluations, converged: Some(Convergence::Gradient) });
        }
        self.iterations += 1;

        let dir = self.direction(&g);
        let d = dir.tensor(self.kind, grad.device())?;
        let t0 = if self.fresh {
            let l1 = g.abs_sum();
            (1.0f64).min(1.0 / l1) * self.lr
        } else {
            self.lr
        };
        // The first direction after a (re)start is steepest descent, without
        // the curvature scale the history gives later ones, and its step is
        // deliberately short (1 / |g|_1): that it predicts or makes a small
        // change says nothing about convergence on a badly scaled objective,
        // so only the gradient test may end it.
        let first_step = std::mem::replace(&mut self.fresh, false);
        let gtd = g.dot(&dir);
        if !gtd.is_finite() {
            return Err(Error::Training(format!(
                "the L-BFGS search direction is not finite (g·d = {gtd}); the curvature history is broken"
            )));
        }
        if gtd > -tol_change && !first_step {
            return Ok(Iteration { loss, grad_max, evaluations, converged: Some(Convergence::LossChange) });
        }

        let x: Vec<Tensor> = self.vars.iter().map(|v| v.detach().copy()).collect();
        let ls = self.line_search(f, &x, &d, t0, loss, &grad, gtd)?;
        evaluations += ls.evaluations;
        if ls.t == 0.0 && ls.failed_trials == ls.evaluations {
            return Err(Error::Training(format!(
                "the objective was not finite at any of the {} trial points of the line search",
                ls.evaluations
            )));
        }
        self.restore(&x, Some(&(&d * ls.t)));

        // The new correction pair (used by the next direction).
        let new = Flat::of(&ls.grad, self.host)?;
        let step = dir.scaled(ls.t);
        let y = new.minus(&g);
        let ys = y.dot(&step);
        let step_max = step.max_abs();
        if ys > MIN_CURVATURE {
            if self.history.len() == self.config.history_size {
                self.history.pop_front();
            }
            self.h_diag = ys / y.dot(&y);
            if self.config.history_size > 0 {
                self.history.push_back(Pair { s: step, y, rho: 1.0 / ys });
            }
        }

        let new_max = new.max_abs();
        let converged = if new_max <= tol_grad {
            Some(Convergence::Gradient)
        } else if first_step {
            None
        } else if step_max <= self.config.tolerance_change {
            Some(Convergence::Step)
        } else if (ls.loss - loss).abs() < tol_change {
            Some(Convergence::LossChange)
        } else {
            None
        };
        self.current = Some(Point { loss: ls.loss, grad: ls.grad, flat: new });
        Ok(Iteration { loss: ls.loss, grad_max: new_max, evaluations, converged })
    }

    /// Clears the curvature history (used after a resume), and forgets the
    /// objective at the current point: the next [`Lbfgs::iterate`] evaluates
    /// it afresh and starts with a steepest-descent step, as the first did.
    pub fn reset(&mut self) {
        self.history.clear();
        self.h_diag = 1.0;
        self.fresh = true;
        self.current = None;
    }

    /// Iterations done (calls of [`Lbfgs::iterate`] that searched a direction).
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Function evaluations done.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// The two-loop recursion: `-H g` with the stored pairs.
    fn direction(&self, grad: &Flat) -> Flat {
        let mut q = grad.scaled(-1.0);
        if self.history.is_empty() {
            return q;
        }
        let mut alphas = vec![0.0; self.history.len()];
        for (p, a) in self.history.iter().zip(&mut alphas).rev() {
            *a = p.s.dot(&q) * p.rho;
            q.add_scaled(-*a, &p.y);
        }
        let mut r = q.scaled(self.h_diag);
        for (p, a) in self.history.iter().zip(&alphas) {
            let beta = p.y.dot(&r) * p.rho;
            r.add_scaled(a - beta, &p.s);
        }
        r
    }

    /// The variables' gradients, flattened and concatenated (zeros for a
    /// variable without one).
    fn flat_grad(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .vars
            .iter()
            .map(|v| {
                let g = v.grad();
                if g.defined() {
                    g.detach().reshape([-1]).to_kind(self.kind)
                } else {
                    Tensor::zeros([v.numel() as i64], (self.kind, v.device()))
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Sets the variables to `x`, plus `step` (flat) when given.
    fn restore(&mut self, x: &[Tensor], step: Option<&Tensor>) {
        tch::no_grad(|| {
            let mut offset = 0;
            for ((v, x), n) in self.vars.iter_mut().zip(x).zip(&self.numels) {
                v.copy_(x);
                if let Some(step) = step {
                    let part = step.narrow(0, offset, *n).view_as(v).to_kind(v.kind());
                    let _ = v.g_add_(&part);
                }
                offset += n;
            }
        });
    }

    /// Objective and flat gradient at `x + t d`; the variables are back at `x` after.
    fn evaluate(
        &mut self,
        f: &mut dyn FnMut() -> Result<f64>,
        x: &[Tensor],
        t: f64,
        d: &Tensor,
    ) -> Result<Trial> {
        self.restore(x, Some(&(d * t)));
        let loss = f();
        self.evaluations += 1;
        let grad = self.flat_grad();
        self.restore(x, None);
        let loss = loss?;
        let gtd = grad.dot(d).double_value(&[]);
        if loss.is_finite() && gtd.is_finite() {
            Ok(Trial { t, f: loss, g: grad, gtd, ok: true })
        } else {
            // A failed trial: worse than anything, so that the search shrinks the step.
            Ok(Trial { t, f: f64::INFINITY, g: grad, gtd: f64::NAN, ok: false })
        }
    }

    /// A step length along `d` from `x` satisfying the strong Wolfe conditions
    /// (Nocedal & Wright algorithms 3.5 and 3.6, as torch's `_strong_wolfe`).
    #[allow(clippy::too_many_arguments)]
    fn line_search(
        &mut self,
        f: &mut dyn FnMut() -> Result<f64>,
        x: &[Tensor],
        d: &Tensor,
        t: f64,
        f0: f64,
        g0: &Tensor,
        gtd0: f64,
    ) -> Result<LineSearch> {
        let max_evals = self.config.max_line_search.max(1);
        let tol = self.config.tolerance_change;
        let d_norm = d.abs().max().double_value(&[]);
        let mut evals = 0;
        let mut failed = 0;
        let mut eval = |this: &mut Self, t: f64| -> Result<Trial> {
            evals += 1;
            let trial = this.evaluate(f, x, t, d)?;
            if !trial.ok {
                failed += 1;
            }
            Ok(trial)
        };
        let start = Trial { t: 0.0, f: f0, g: g0.shallow_clone(), gtd: gtd0, ok: true };

        // Bracketing: an interval that contains a point satisfying the conditions, or such a point.
        let mut prev = start.clone_shallow();
        let mut new = eval(self, t)?;
        let mut n = 1;
        let mut bracket: [Trial; 2];
        let mut done = false;
        loop {
            if new.f > f0 + C1 * new.t * gtd0 || (n > 2 && new.f >= prev.f) {
                bracket = [prev, new];
                break;
            }
            if new.gtd.abs() <= -C2 * gtd0 {
                bracket = [new.clone_shallow(), new];
                done = true;
                break;
            }
            if new.gtd >= 0.0 {
                bracket = [prev, new];
                break;
            }
            if n >= max_evals {
                bracket = [start.clone_shallow(), new];
                break;
            }
            let (lo, hi) = (new.t + 0.01 * (new.t - prev.t), new.t * 10.0);
            let next_t = cubic_min(&prev, &new, Some((lo, hi)));
            prev = new;
            new = eval(self, next_t)?;
            n += 1;
        }

        // Zoom: shrink the bracket until a point satisfies the conditions.
        let mut low = if bracket[0].f <= bracket[1].f { 0 } else { 1 };
        let mut insufficient_progress = false;
        while !done && n < max_evals {
            let (a, b) = (bracket[0].t, bracket[1].t);
            if (b - a).abs() * d_norm < tol {
                break;
            }
            let (bmin, bmax) = (a.min(b), a.max(b));
            let mut t = if bracket.iter().all(|p| p.ok) {
                cubic_min(&bracket[0], &bracket[1], None)
            } else {
                // A failed end: bisect (backtracking) rather than interpolate.
                0.5 * (a + b)
            };
            // Keep the trial away from the ends when interpolation hugs one of them.
            let eps = 0.1 * (bmax - bmin);
            if (bmax - t).min(t - bmin) < eps {
                if insufficient_progress || t >= bmax || t <= bmin {
                    t = if (t - bmax).abs() < (t - bmin).abs() { bmax - eps } else { bmin + eps };
                    insufficient_progress = false;
                } else {
                    insufficient_progress = true;
                }
            } else {
                insufficient_progress = false;
            }
            let new = eval(self, t)?;
            n += 1;
            let high = 1 - low;
            if new.f > f0 + C1 * t * gtd0 || new.f >= bracket[low].f {
                bracket[high] = new;
                low = if bracket[0].f <= bracket[1].f { 0 } else { 1 };
            } else {
                if new.gtd.abs() <= -C2 * gtd0 {
                    done = true;
                } else if new.gtd * (bracket[high].t - bracket[low].t) >= 0.0 {
                    bracket[high] = bracket[low].clone_shallow();
                }
                bracket[low] = new;
            }
        }
        let [b0, b1] = bracket;
        let best = if low == 0 { b0 } else { b1 };
        Ok(LineSearch { t: best.t, loss: best.f, grad: best.g, evaluations: evals, failed_trials: failed })
    }
}

/// One evaluated point of a line search.
#[derive(Debug)]
struct Trial {
    t: f64,
    /// The objective (`+inf` for a failed trial).
    f: f64,
    g: Tensor,
    /// Directional derivative `g·d`.
    gtd: f64,
    /// Whether the objective and gradient were finite.
    ok: bool,
}

impl Trial {
    fn clone_shallow(&self) -> Trial {
        Trial { t: self.t, f: self.f, g: self.g.shallow_clone(), gtd: self.gtd, ok: self.ok }
    }
}

/// The outcome of a line search.
#[derive(Debug)]
struct LineSearch {
    t: f64,
    loss: f64,
    grad: Tensor,
    evaluations: usize,
    failed_trials: usize,
}

/// The minimiser of the cubic through two points with their values and
/// derivatives, clamped to `bounds` (default: the interval between them); the
/// middle of the bounds when the cubic has no minimiser.
fn cubic_min(p1: &Trial, p2: &Trial, bounds: Option<(f64, f64)>) -> f64 {
    let (x1, f1, g1, x2, f2, g2) = (p1.t, p1.f, p1.gtd, p2.t, p2.f, p2.gtd);
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    let mid = 0.5 * (lo + hi);
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let m = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        if m.is_finite() {
            m.max(lo).min(hi)
        } else {
            mid
        }
    } else {
        mid
    }
}

/// A flat tensor's values on the host, in `f64`.
fn to_host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(&t.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Double)?)?)
}
