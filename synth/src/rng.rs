//! Per-image random numbers: a counter-based generator keyed by the image's seed.
//!
//! Image `i` of a data set draws only from its own stream, whose key is a hash
//! of (global seed, `i`), so its pixels do not depend on which thread makes it,
//! in what order, or how many threads there are.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (Stafford's "mix 13"): a bijective 64-bit hash.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of image `index` of a data set made with global seed `seed`.
///
/// This is the `seed` column of the manifest: with the config's other
/// parameters it alone fixes the image.
pub fn image_seed(seed: u64, index: usize) -> u64 {
    mix64(mix64(seed).wrapping_add((index as u64).wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A counter-based generator: output `k` is `mix64(key + (k + 1) * GOLDEN)`,
/// which is SplitMix64 started at `key` (it passes BigCrush). Any output can
/// be computed without the ones before it.
#[derive(Debug, Clone)]
pub(crate) struct CounterRng {
    key: u64,
    counter: u64,
}

impl CounterRng {
    pub(crate) fn new(key: u64) -> Self {
        CounterRng { key, counter: 0 }
    }

    /// The next 64 random bits.
    #[inline(always)]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix64(self.key.wrapping_add(self.counter.wrapping_mul(GOLDEN)))
    }

    /// Fills `out` with independent standard normal values: Box–Muller on
    /// 24-bit uniforms, in blocks of [`BLOCK`] pairs (the first half of a
    /// block's slots get `r cos θ`, the second half `r sin θ`), with
    /// polynomial `ln`, `sin` and `cos` accurate to about 1e-7 so that the
    /// loop vectorises. Always draws whole blocks from the stream.
    #[inline(always)]
    pub(crate) fn fill_normals(&mut self, out: &mut [f32]) {
        let (mut radius_bits, mut angle_bits) = ([0u32; BLOCK], [0u32; BLOCK]);
        let mut cos = [0f32; BLOCK];
        let mut sin = [0f32; BLOCK];
        for chunk in out.chunks_mut(2 * BLOCK) {
            for (r, a) in radius_bits.iter_mut().zip(angle_bits.iter_mut()) {
                let bits = self.next_u64();
                (*r, *a) = ((bits >> 32) as u32, bits as u32);
            }
            box_muller(&radius_bits, &angle_bits, &mut cos, &mut sin);
            let half = chunk.len().div_ceil(2);
            let (first, second) = chunk.split_at_mut(half);
            first.copy_from_slice(&cos[..half]);
            second.copy_from_slice(&sin[..second.len()]);
        }
    }

    /// Uniform in [-1, 1).
    pub(crate) fn symmetric_unit(&mut self) -> f64 {
        // 53 random bits -> [0, 1) -> [-1, 1).
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        2.0 * u - 1.0
    }
}

/// Pairs per block of [`CounterRng::fill_normals`].
const BLOCK: usize = 64;
/// 2^-24.
const INV_2_24: f32 = 1.0 / 16_777_216.0;

/// Box–Muller: each pair of 32-bit words gives a radius `r = sqrt(-2 ln u)`,
/// `u` in (0, 1], and a uniform angle θ; out come `r cos θ` and `r sin θ`, two
/// independent standard normal values.
#[inline(always)]
fn box_muller(
    radius_bits: &[u32; BLOCK],
    angle_bits: &[u32; BLOCK],
    cos: &mut [f32; BLOCK],
    sin: &mut [f32; BLOCK],
) {
    for i in 0..BLOCK {
        let (hi, lo) = (radius_bits[i], angle_bits[i]);
        let u = (((hi >> 8) + 1) as i32) as f32 * INV_2_24;
        let r = (-2.0 * ln(u)).sqrt();
        // θ = quadrant * π/2 + φ, φ uniform in [-π/4, π/4).
        let quadrant = lo >> 30;
        let phi = ((((lo >> 6) & 0xff_ffff) as i32) as f32 * INV_2_24 - 0.5) * std::f32::consts::FRAC_PI_2;
        let (s, c) = sin_cos_quarter(phi);
        // Turn (cos φ, sin φ) by quadrant * 90 degrees.
        let (x, y) = if quadrant & 1 == 1 { (-s, c) } else { (c, s) };
        let flip = (quadrant & 2) << 30;
        cos[i] = r * f32::from_bits(x.to_bits() ^ flip);
        sin[i] = r * f32::from_bits(y.to_bits() ^ flip);
    }
}

/// Natural log for `u` in (0, 1] (normal floats), error about 1e-9 in the
/// reduced argument: `u = 2^e m`, `m` in [√½, √2), `ln m = 2 atanh((m-1)/(m+1))`.
#[inline(always)]
fn ln(u: f32) -> f32 {
    const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
    let bits = u.to_bits() as i32;
    let e = (bits - SQRT_HALF_BITS) >> 23;
    let m = f32::from_bits((bits - (e << 23)) as u32);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0))));
    e as f32 * std::f32::consts::LN_2 + t * series
}

/// `(sin φ, cos φ)` for φ in [-π/4, π/4], Taylor to degree 9 and 8 (error < 3e-8).
#[inline(always)]
fn sin_cos_quarter(phi: f32) -> (f32, f32) {
    let p2 = phi * phi;
    let s =
        phi * (1.0 + p2 * (-1.0 / 6.0 + p2 * (1.0 / 120.0 + p2 * (-1.0 / 5040.0 + p2 * (1.0 / 362_880.0)))));
    let c = 1.0 + p2 * (-0.5 + p2 * (1.0 / 24.0 + p2 * (-1.0 / 720.0 + p2 * (1.0 / 40_320.0))));
    (s, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_sin_cos_match_std() {
        for i in 1..=100_000u32 {
            let u = i as f32 / 100_000.0;
            assert!((ln(u) - u.ln()).abs() <= 2e-7 * (1.0 + u.ln().abs()), "ln({u})");
        }
        for i in -1000..=1000 {
            let phi = i as f32 / 1000.0 * std::f32::consts::FRAC_PI_4;
            let (s, c) = sin_cos_quarter(phi);
            assert!((s - phi.sin()).abs() < 2e-7 && (c - phi.cos()).abs() < 2e-7, "sin_cos({phi})");
        }
    }

    #[test]
    fn normals_have_the_moments_of_a_standard_normal() {
        let mut rng = CounterRng::new(7);
        let mut z = vec![0f32; 1 << 20];
        rng.fill_normals(&mut z);
        let n = z.len() as f64;
        let moment = |k: i32| z.iter().map(|&v| (v as f64).powi(k)).sum::<f64>() / n;
        // Standard errors at 2^20 samples: mean 0.001, variance 0.0014, kurtosis 0.0024 (x sqrt(96)).
        assert!(moment(1).abs() < 0.005, "mean {}", moment(1));
        assert!((moment(2) - 1.0).abs() < 0.007, "variance {}", moment(2));
        assert!(moment(3).abs() < 0.015, "skewness {}", moment(3));
        assert!((moment(4) - 3.0).abs() < 0.05, "kurtosis {}", moment(4));
        // The two halves of a block (cos and sin parts) are uncorrelated.
        let cross: f64 = z
            .chunks(2 * BLOCK)
            .map(|c| (0..BLOCK).map(|i| (c[i] * c[BLOCK + i]) as f64).sum::<f64>())
            .sum::<f64>()
            / (n / 2.0);
        assert!(cross.abs() < 0.007, "cos-sin correlation {cross}");
        // Tail mass beyond 3 sigma: 0.0027.
        let tail = z.iter().filter(|v| v.abs() > 3.0).count() as f64 / n;
        assert!((tail - 0.0027).abs() < 0.0003, "tail {tail}");
    }
}
