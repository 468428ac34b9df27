//! Diversity in feature space: greedy k-centre (Gonzalez 1985; the "core
//! set" of Sener and Savarese 2018), optionally weighted by uncertainty.
//!
//! Every candidate keeps its distance to the nearest *centre*: the images
//! already labelled and the ones picked so far. Each step picks the
//! candidate of largest `weight x distance` and makes it a centre, so a
//! near-copy of a pick has a distance near 0 and waits until everything
//! else is covered. Unweighted, it covers the pool; weighted by
//! uncertainty, it prefers the unsure images but not two of the same kind.
//!
//! Distances are Euclidean on the rows given (standardised features), with
//! one matrix-vector product per pick: `O(N D)` per suggestion.
//!
//! [`gradient_seeding`] is the other way to be unsure and diverse at once
//! (BADGE, Ash et al. 2020): each image's *gradient embedding*, the gradient
//! of its loss at its predicted class with respect to a linear head's
//! weights, is `(p - e_ŷ) ⊗ x`: long when the head is unsure, pointing where
//! its features are. k-means++ seeding (Arthur and Vassilvitskii 2007) on
//! those embeddings picks images with probability proportional to their
//! squared distance to the nearest pick: unsure and unlike each other, but
//! not the few outliers that greedy farthest-first would take.

use tch::{Device, Kind, Tensor};

use crate::progress::Progress;
use crate::{Error, Result};

/// Centres per block when measuring the distance of every candidate to the
/// labelled images (bounds the `[N, block]` distance matrix).
const CENTRE_BLOCK: i64 = 512;

/// One pick of [`k_centre`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// The candidate's row.
    pub index: usize,
    /// Its Euclidean distance to the nearest centre when it was picked
    /// (infinite for a first pick with no labelled image).
    pub distance: f64,
}

/// The result of [`k_centre`].
#[derive(Debug, Clone, PartialEq)]
pub struct KCentre {
    /// The picks, in order.
    pub picks: Vec<Pick>,
    /// The median over the candidates of their distance to the nearest
    /// labelled image before any pick (to the first pick when nothing is
    /// labelled): the unit a pick's distance is told in.
    pub scale: f64,
}

/// Squared distance of every row of `x` (squared norms `sq`) to its nearest row of `centres`.
///
/// # Shapes
/// `x`: `[N, D]`, `sq`: `[N]`, `centres`: `[M, D]` -> `[N]`.
fn nearest_sq(x: &Tensor, sq: &Tensor, centres: &Tensor) -> Result<Tensor> {
    let m = centres.size()[0];
    let mut best = Tensor::f_full([x.size()[0]], f64::INFINITY, (Kind::Float, Device::Cpu))?;
    let mut start = 0;
    while start < m {
        let len = CENTRE_BLOCK.min(m - start);
        let c = centres.f_narrow(0, start, len)?;
        let csq = c.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?;
        // |x|² + |c|² - 2 x·c, [N, len]
        let d = sq.f_unsqueeze(1)? + csq.f_unsqueeze(0)? - x.f_matmul(&c.f_transpose(0, 1)?)? * 2.0;
        let (nearest, _) = d.f_min_dim(1, false)?;
        best = best.f_minimum(&nearest)?;
        start += len;
    }
    Ok(best.f_clamp_min(0.0)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Picks `k` rows of `candidates` by greedy k-centre: each the row of
/// largest `weight x distance to the nearest centre` (centres: the rows of
/// `labelled`, then every pick). Without `weights` every row weighs 1.
/// With nothing labelled, the first pick is the row of largest weight
/// (unweighted: the row nearest the candidates' mean). Ties go to the lower
/// row. A row is never picked twice; `k` is cut to the number of rows.
///
/// Errors when `weights` does not have one value per row, or the widths differ.
///
/// # Shapes
/// `candidates`: `[N, D]`, `labelled`: `[M, D]` (M may be 0).
pub fn k_centre(
    candidates: &Tensor,
    labelled: Option<&Tensor>,
    weights: Option<&[f64]>,
    k: usize,
    progress: &mut dyn Progress,
) -> Result<KCentre> {
    tch::no_grad(|| {
        let x = candidates.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
        let (n, d) = match x.size().as_slice() {
            &[n, d] => (n, d),
            s => return Err(Error::Invalid(format!("k-centre needs [N, D] candidates, got {s:?}"))),
        };
        if let Some(w) = weights {
            if w.len() as i64 != n {
                return Err(Error::Invalid(format!("{} weights for {n} candidates", w.len())));
            }
        }
        let labelled = match labelled {
            Some(l) if l.size().first().copied().unwrap_or(0) > 0 => {
                if l.size().get(1) != Some(&d) {
                    return Err(Error::Invalid(format!(
                        "labelled rows have {:?} columns, candidates {d}",
                        l.size().get(1)
                    )));
                }
                Some(l.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?)
            }
            _ => None,
        };
        let k = k.min(n as usize);
        let sq = x.f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?;
        let w: Vec<f64> = weights.map_or_else(|| vec![1.0; n as usize], <[f64]>::to_vec);
        let weight = Tensor::from_slice(&w).f_to_kind(Kind::Float)?;
        // A zero weight still ranks by distance (after every positive one).
        let floor = w.iter().copied().fold(0.0f64, f64::max).max(1.0) * 1e-6;
        let weight = weight.f_clamp_min(floor)?;
        // -inf on the rows picked already (argmax takes the first of equal scores).
        let taken = Tensor::f_zeros([n], (Kind::Float, Device::Cpu))?;
        let mut picks = Vec::with_capacity(k);
        let mut nearest = match &labelled {
            Some(l) => Some(nearest_sq(&x, &sq, l)?),
            None => None,
        };
        let mut scale = nearest.as_ref().map(|m| median(crate::model::to_vec_f64(&m.sqrt())));
        progress.start("choosing images", k as u64);
        for step in 0..k {
            let index = match &nearest {
                Some(m) => {
                    let score = m.f_sqrt()?.f_mul(&weight)?.f_add(&taken)?;
                    score.f_argmax(None, false)?.f_int64_value(&[])? as usize
                }
                None if weights.is_some() => first_max(&w),
                None => {
                    let mean = x.f_mean_dim(0, true, Kind::Float)?;
                    let to_mean = (&x - mean).f_square()?.f_sum_dim_intlist(1, false, Kind::Float)?;
                    to_mean.f_argmin(None, false)?.f_int64_value(&[])? as usize
                }
            };
            let distance = match &nearest {
                Some(m) => m.f_double_value(&[index as i64])?.sqrt(),
                None => f64::INFINITY,
            };
            let _ = taken.f_get(index as i64)?.f_fill_(f64::NEG_INFINITY)?;
            picks.push(Pick { index, distance });
            let centre = x.f_get(index as i64)?;
            let to_pick =
                (&sq + centre.f_square()?.f_sum(Kind::Float)? - x.f_mv(&centre)? * 2.0).f_clamp_min(0.0)?;
            nearest = Some(match nearest {
                Some(m) => m.f_minimum(&to_pick)?,
                None => to_pick,
            });
            if scale.is_none() {
                scale = nearest.as_ref().map(|m| median(crate::model::to_vec_f64(&m.sqrt())));
            }
            progress.advance(step as u64 + 1, None);
        }
        progress.finish();
        Ok(KCentre { picks, scale: scale.unwrap_or(f64::NAN) })
    })
}

/// k-means++ seeding on gradient embeddings `g_i = r_i ⊗ x_i`: the first
/// pick is the longest embedding, each next one is drawn (seeded) with
/// probability proportional to its squared distance to the nearest pick.
/// The embeddings are never formed: `g_i · g_j = (r_i · r_j)(x_i · x_j)`, so
/// each pick costs `O(N (D + R))`. When every remaining distance is 0 (all
/// alike), the rest are taken in order. `distance` of a pick is its
/// embedding's distance to the nearest earlier pick (infinite for the first).
///
/// # Shapes
/// `x`: `[N, D]` features, `r`: `[N, R]` residuals `p - e_ŷ` of every class
/// head side by side -> `k` picks (all `N` when fewer).
///
/// ```
/// use furcate_core::suggest::diversity::gradient_seeding;
/// use tch::Tensor;
///
/// // An unsure image and its copy, a sure image, an unsure image elsewhere.
/// let x = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, -1.0, 0.0]).view([4, 2]);
/// let r = Tensor::from_slice(&[0.5f32, -0.5, 0.5, -0.5, 0.0, 0.0, 0.4, -0.4]).view([4, 2]);
/// let mut chosen: Vec<usize> = gradient_seeding(&x, &r, 3, 0)?.iter().map(|p| p.index).collect();
/// assert_eq!(chosen[0], 0); // the longest embedding first
/// chosen.sort();
/// assert_eq!(chosen, vec![0, 2, 3]); // the copy of a pick only when nothing else is left
/// # Ok::<(), furcate_core::Error>(())
/// ```
pub fn gradient_seeding(x: &Tensor, r: &Tensor, k: usize, seed: u64) -> Result<Vec<Pick>> {
    use rand::{Rng, SeedableRng};
    tch::no_grad(|| {
        let x = x.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?;
        let r = r.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?;
        let n = match (x.size().as_slice(), r.size().as_slice()) {
            (&[n, _], &[m, _]) if n == m => n,
            (a, b) => {
                return Err(Error::Invalid(format!(
                    "gradient embeddings need [N, D] features and [N, R] residuals, got {a:?} and {b:?}"
                )))
            }
        };
        let norm = |t: &Tensor| t.f_square()?.f_sum_dim_intlist(1, false, Kind::Double);
        // |g_i|² = |r_i|² |x_i|².
        let lengths = norm(&r)?.f_mul(&norm(&x)?)?;
        let k = k.min(n as usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut picks: Vec<Pick> = Vec::with_capacity(k);
        let mut nearest: Option<Vec<f64>> = None;
        let mut taken = vec![false; n as usize];
        for _ in 0..k {
            let index = match &nearest {
                None => first_max(&crate::model::to_vec_f64(&lengths)),
                Some(d) => {
                    let total: f64 = d.iter().zip(&taken).filter(|(_, t)| !**t).map(|(d, _)| d).sum();
                    if total > 0.0 && total.is_finite() {
                        let mut at = rng.random::<f64>() * total;
                        let mut chosen = None;
                        for (i, (d, t)) in d.iter().zip(&taken).enumerate() {
                            if *t || *d <= 0.0 {
                                continue;
                            }
                            chosen = Some(i);
                            at -= d;
                            if at < 0.0 {
                                break;
                            }
                        }
                        chosen.unwrap_or(0)
                    } else {
                        taken.iter().position(|t| !t).unwrap_or(0)
                    }
                }
            };
            let distance = nearest.as_ref().map_or(f64::INFINITY, |d| d[index].max(0.0).sqrt());
            taken[index] = true;
            picks.push(Pick { index, distance });
            // |g_i - g_j|² = |g_i|² + |g_j|² - 2 (r_i · r_j)(x_i · x_j).
            let j = index as i64;
            let cross = r.f_mv(&r.f_get(j)?)?.f_mul(&x.f_mv(&x.f_get(j)?)?)?;
            let to_pick = (&lengths + lengths.f_double_value(&[j])? - cross * 2.0).f_clamp_min(0.0)?;
            let to_pick = crate::model::to_vec_f64(&to_pick);
            nearest = Some(match nearest {
                Some(d) => d.iter().zip(&to_pick).map(|(a, b)| a.min(*b)).collect(),
                None => to_pick,
            });
        }
        Ok(picks)
    })
}

/// The index of the first largest value.
fn first_max(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}
