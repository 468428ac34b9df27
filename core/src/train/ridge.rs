//! Exact ridge regression: a squared-loss linear head on cached features has
//! a closed form, and its whole regularisation path costs one decomposition.
//!
//! With the labelled rows' features `X` (`[n, D]`) and targets `y` (`[n, K]`),
//! both centred on the rows' means (the bias is not penalised), the thin SVD
//! `Xc = U S Vᵀ` gives for every penalty `α`
//!
//! - the weights `w(α) = V diag(s / (s² + α)) Uᵀ yc` and the bias `ȳ - x̄ w`;
//! - the fitted values `ŷ = ȳ + U diag(s² / (s² + α)) Uᵀ yc`;
//! - the leave-one-out residuals `(y_i - ŷ_i) / (1 - h_i)` with the leverage
//!   `h_i = 1/n + Σ_j U_ij² s_j² / (s_j² + α)` (the intercept's `1/n`
//!   included), exactly what refitting without row `i` would leave
//!   (scikit-learn's `RidgeCV` scores its path the same way);
//! - the leave-group-out residuals `(I - H_GG)⁻¹ (y_G - ŷ_G)` of a group of
//!   rows `G` left out together (an image and its views), `H_GG` the block of
//!   the hat matrix `H_ij = 1/n + Σ_l U_il U_jl s_l² / (s_l² + α)` on `G`.
//!
//! Singular values below `max(s) · max(n, D) · ε` are dropped, so `α = 0`
//! is the minimum-norm least-squares solution. Everything is in `f64`.
//!
//! **Penalty.** furcate's objective for a head is `weight · mean(r²) +
//! weight_decay / 2 · ||w||²`; its minimiser is ridge with
//! `α = n · weight_decay / (2 · weight)` ([`alpha`]).
//!
//! ```
//! use furcate_core::train::ridge::RidgePath;
//! use tch::{Device, Kind, Tensor};
//!
//! // y = 2 x0 - x1 + 3, exactly.
//! let x = Tensor::from_slice(&[0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 3.0, 5.0, -1.0, 2.0]).reshape([5, 2]);
//! let y = Tensor::from_slice(&[2.0, 5.0, 6.0, 4.0, -1.0]).reshape([5, 1]);
//! let path = RidgePath::new(&x, &y)?;
//! let (w, b) = path.solve(0.0);
//! assert!((w.double_value(&[0, 0]) - 2.0).abs() < 1e-9 && (w.double_value(&[0, 1]) + 1.0).abs() < 1e-9);
//! assert!((b.double_value(&[0]) - 3.0).abs() < 1e-9);
//! // An exact fit leaves no leave-one-out error either.
//! assert!(path.loo_residuals(0.0).abs().max().double_value(&[]) < 1e-9);
//! # Ok::<(), furcate_core::Error>(())
//! ```

use tch::{Device, Kind, Tensor};

use crate::head::{LeastSquares, Targets};
use crate::{Error, Result};

/// The ridge `α` that minimises `weight · mean(r²) + weight_decay / 2 · ||w||²`
/// over `rows` rows (see the module docs).
pub fn alpha(weight_decay: f64, rows: usize, weight: f64) -> f64 {
    rows as f64 * weight_decay / (2.0 * weight.max(f64::MIN_POSITIVE))
}

/// One decomposition of the centred features, from which the solution, the
/// fitted values and the leave-one-out residuals of every `α` follow.
#[derive(Debug)]
pub struct RidgePath {
    x_mean: Tensor,
    y_mean: Tensor,
    y: Tensor,
    u: Tensor,
    s: Tensor,
    v: Tensor,
    uty: Tensor,
    rows: usize,
}

impl RidgePath {
    /// Decomposes the centred `x` (`[n, D]`) against the targets `y`
    /// (`[n, K]` or `[n]`), on the CPU in `f64`.
    ///
    /// # Errors
    /// [`Error::Training`] for fewer than 2 rows, mismatched rows or a
    /// non-finite entry; libtorch's failures as [`Error::Torch`].
    pub fn new(x: &Tensor, y: &Tensor) -> Result<Self> {
        let x = x.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
        let y = y.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?;
        let y = if y.dim() == 1 { y.f_unsqueeze(1)? } else { y };
        let n = x.size()[0];
        if x.dim() != 2 || y.size()[0] != n {
            return Err(Error::Training(format!(
                "ridge: features {:?} and targets {:?} do not match",
                x.size(),
                y.size()
            )));
        }
        if n < 2 {
            return Err(Error::Training(format!("ridge: {n} labelled rows, at least 2 are needed")));
        }
        let finite = |t: &Tensor| -> Result<bool> { Ok(t.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0) };
        if !finite(&x)? || !finite(&y)? {
            return Err(Error::Training("ridge: a feature or target is not finite".into()));
        }
        let x_mean = x.f_mean_dim(0, false, Kind::Double)?;
        let y_mean = y.f_mean_dim(0, false, Kind::Double)?;
        let xc = x.f_sub(&x_mean)?;
        let yc = y.f_sub(&y_mean)?;
        let (u, s, v) = xc.f_svd(true, true)?;
        let cutoff = s.f_max()?.f_double_value(&[])? * (n.max(x.size()[1]) as f64) * f64::EPSILON;
        let keep = s.f_gt(cutoff)?.f_nonzero()?.f_squeeze_dim(1)?;
        let u = u.f_index_select(1, &keep)?;
        let s = s.f_index_select(0, &keep)?;
        let v = v.f_index_select(1, &keep)?;
        let uty = u.f_transpose(0, 1)?.f_matmul(&yc)?;
        Ok(RidgePath { x_mean, y_mean, y, u, s, v, uty, rows: n as usize })
    }

    /// Rows decomposed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `s / (s² + α)` and `s² / (s² + α)`, `[r, 1]` each.
    fn filters(&self, alpha: f64) -> (Tensor, Tensor) {
        let s2 = self.s.square();
        let denom = &s2 + alpha.max(0.0);
        ((&self.s / &denom).unsqueeze(1), (s2 / denom).unsqueeze(1))
    }

    /// The solution at `α`: weights `[K, D]` (a linear layer's layout) and bias `[K]`.
    pub fn solve(&self, alpha: f64) -> (Tensor, Tensor) {
        let (shrink, _) = self.filters(alpha);
        let w = self.v.matmul(&(shrink * &self.uty)); // [D, K]
        let b = &self.y_mean - self.x_mean.unsqueeze(0).matmul(&w).squeeze_dim(0);
        (w.transpose(0, 1).contiguous(), b)
    }

    /// The leave-one-out residuals `y_i - ŷ_(-i)` at `α`, `[n, K]`.
    pub fn loo_residuals(&self, alpha: f64) -> Tensor {
        let (_, smooth) = self.filters(alpha);
        let fitted = self.u.matmul(&(&smooth * &self.uty)) + &self.y_mean;
        let leverage = self.u.square().matmul(&smooth).squeeze_dim(1) + 1.0 / self.rows as f64;
        // h_i < 1 unless row i is alone in its own direction (then LOO is undefined: keep the residual).
        let denom = (leverage.neg() + 1.0).clamp_min(1e-12).unsqueeze(1);
        (&self.y - fitted) / denom
    }

    /// The leave-group-out residuals `y_G - ŷ_(-G)` at `α`, `[n, K]`: the
    /// rows of each group of `groups` (lists of rows, each row in one) left
    /// out together, exactly what refitting without them would leave (see
    /// the module docs). A group of one gives [`RidgePath::loo_residuals`]'s
    /// value; a group whose block `I - H_GG` is singular keeps its residuals.
    pub fn loo_group_residuals(&self, alpha: f64, groups: &[Vec<usize>]) -> Result<Tensor> {
        let (_, smooth) = self.filters(alpha);
        let fitted = self.u.f_matmul(&(&smooth * &self.uty))?.f_add(&self.y_mean)?;
        let residual = self.y.f_sub(&fitted)?;
        let (n, k) = (self.rows, residual.size()[1] as usize);
        let r = self.s.size()[0] as usize;
        let flat =
            |t: &Tensor| -> Result<Vec<f64>> { Ok(Vec::<f64>::try_from(t.f_contiguous()?.f_view([-1])?)?) };
        let (u, f, e) = (flat(&self.u)?, flat(&smooth)?, flat(&residual)?);
        let mut out = e.clone();
        for g in groups {
            let m = g.len();
            // [I - H_GG | e_G], solved by Gaussian elimination with partial pivoting.
            let mut a = vec![0.0; m * (m + k)];
            for (i, &ri) in g.iter().enumerate() {
                for (j, &rj) in g.iter().enumerate() {
                    let h: f64 =
                        (0..r).map(|l| u[ri * r + l] * u[rj * r + l] * f[l]).sum::<f64>() + 1.0 / n as f64;
                    a[i * (m + k) + j] = f64::from(u8::from(i == j)) - h;
                }
                a[i * (m + k) + m..(i + 1) * (m + k)].copy_from_slice(&e[ri * k..(ri + 1) * k]);
            }
            if let Some(x) = solve_augmented(&mut a, m, k) {
                for (i, &ri) in g.iter().enumerate() {
                    out[ri * k..(ri + 1) * k].copy_from_slice(&x[i * k..(i + 1) * k]);
                }
            }
        }
        Ok(Tensor::from_slice(&out).f_view([n as i64, k as i64])?)
    }
}

/// Solves `A X = B` for the `m x (m + k)` augmented matrix `[A | B]`
/// (row-major) in place; `None` when `A` is (numerically) singular.
fn solve_augmented(a: &mut [f64], m: usize, k: usize) -> Option<Vec<f64>> {
    let w = m + k;
    for c in 0..m {
        let p = (c..m).max_by(|&i, &j| a[i * w + c].abs().total_cmp(&a[j * w + c].abs()))?;
        if a[p * w + c].abs() < 1e-12 {
            return None;
        }
        for j in 0..w {
            a.swap(c * w + j, p * w + j);
        }
        for i in 0..m {
            if i != c {
                let factor = a[i * w + c] / a[c * w + c];
                for j in c..w {
                    a[i * w + j] -= factor * a[c * w + j];
                }
            }
        }
    }
    let mut x = vec![0.0; m * k];
    for i in 0..m {
        for j in 0..k {
            x[i * k + j] = a[i * w + m + j] / a[i * w + i];
        }
    }
    Some(x)
}

/// The rows of `input` (`[N, D]`) whose mask in `targets` is set, and their
/// targets as `[n, K]`, on the CPU in `f64`.
pub fn labelled_rows(input: &Tensor, targets: &Targets) -> Result<(Tensor, Tensor)> {
    let idx = targets.mask.f_to_device(Device::Cpu)?.f_nonzero()?.f_squeeze_dim(1)?;
    let values = targets.values.f_to_device(Device::Cpu)?;
    let values = if values.dim() == 1 { values.f_unsqueeze(1)? } else { values };
    let x = input.f_to_device(Device::Cpu)?.f_index_select(0, &idx)?.f_to_kind(Kind::Double)?;
    Ok((x, values.f_index_select(0, &idx)?.f_to_kind(Kind::Double)?))
}

/// Solves the head's linear layer `ls` exactly on the labelled rows of
/// `input` (its columns of the features) with `weight_decay` and loss
/// `weight`, and writes the solution into its variables. Returns the rows used.
///
/// # Errors
/// [`Error::Training`] naming `head` when fewer than 2 rows are labelled, or
/// the solution does not fit the layer.
pub fn solve_head(
    head: &str,
    ls: &LeastSquares,
    input: &Tensor,
    targets: &Targets,
    weight_decay: f64,
    weight: f64,
) -> Result<usize> {
    let (x, y) = labelled_rows(input, targets)?;
    let path = RidgePath::new(&x, &y).map_err(|e| Error::Training(format!("head `{head}`: {e}")))?;
    let k = y.size()[1] as usize;
    let (w, b) = path.solve(alpha(weight_decay, path.rows() * k, weight));
    if w.size() != ls.weight.size() || b.size() != ls.bias.size() {
        return Err(Error::Training(format!(
            "head `{head}`: an exact solution of shape {:?} does not fit its layer {:?}",
            w.size(),
            ls.weight.size()
        )));
    }
    tch::no_grad(|| -> Result<()> {
        let device = ls.weight.device();
        ls.weight.shallow_clone().f_copy_(&w.f_to_device(device)?.f_to_kind(ls.weight.kind())?)?;
        ls.bias.shallow_clone().f_copy_(&b.f_to_device(device)?.f_to_kind(ls.bias.kind())?)?;
        Ok(())
    })?;
    Ok(path.rows())
}

/// A second handle on `targets` (the same tensors).
pub fn same_targets(targets: &Targets) -> Targets {
    Targets { values: targets.values.shallow_clone(), mask: targets.mask.shallow_clone() }
}
