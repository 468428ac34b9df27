//! Periodic 2-D Gaussian random fields, made in Fourier space, and their
//! thresholding at an exact quantile.
//!
//! Blurring white noise `w` with a kernel `g` is, on the periodic lattice,
//! multiplying its discrete Fourier transform by the kernel's transfer
//! function `H`: `F(w * g) = H · F(w)`. The transform of real Gaussian white
//! noise is itself Gaussian white noise with Hermitian symmetry
//! (`W(-k) = conj W(k)`; independent real and imaginary parts of equal
//! variance, real where `k = -k`), so the spectrum is drawn directly in that
//! form and only the inverse transform is computed: the same distribution as
//! transforming spatial noise, for one FFT instead of two. Being periodic, the
//! field has no edge bias (the truncated real-space filter of porespy issue
//! 981 does).

use std::f64::consts::{PI, SQRT_2};
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::rng::CounterRng;

/// Transfer values below this are set to zero (and draw no noise): their
/// whole contribution is below the rounding of an f32 field.
const TRANSFER_CUTOFF: f64 = 1e-9;

/// The FFT plans for one image size, shared by all threads.
pub(crate) struct Plans {
    n: usize,
    /// Half-spectrum width, `n / 2 + 1`.
    w: usize,
    /// The inverse complex FFT of length `n`, for columns and (pairs of) rows.
    fft: Arc<dyn Fft<f32>>,
}

/// The Gaussian transfer function of one morphology on the `n x n` lattice,
/// stored by half-spectrum column: `h[kx * n + ky]`.
pub(crate) struct Transfer {
    h: Vec<f32>,
    /// Whether column `kx` has any non-zero value (an all-zero column needs no FFT).
    active: Vec<bool>,
    /// Runs `[a, b)` of non-zero values in each column (not used for the self-mirrored columns).
    runs: Vec<Vec<(usize, usize)>>,
    /// Normal values one field draws (two per free non-zero coefficient, fewer on the mirrored columns).
    normals: usize,
}

/// Distance between the spectrum's columns: one cache line more than a
/// column, so that reading across columns (a stride of 1 KiB for n = 128)
/// does not keep hitting the same few cache sets.
fn column_stride(n: usize) -> usize {
    n + 8
}

/// Per-thread buffers, allocated once and reused for every image.
pub(crate) struct Scratch {
    /// Spectrum by column, `[kx][ky]`, columns [`column_stride`] apart.
    spectrum: Vec<Complex<f32>>,
    /// Pairs of rows as complex rows `y1 + i y2`, spectrum then values, `[pair][x]`.
    rows: Vec<Complex<f32>>,
    /// The real field, `[y][x]`.
    field: Vec<f32>,
    /// Histogram bucket of each field value, for the selection.
    buckets: Vec<u16>,
    /// Histogram of the field, for the selection (four interleaved tables).
    counts: Box<[[u32; BUCKETS]; 4]>,
    /// Order-preserving integer keys of the candidates for the threshold.
    keys: Vec<u32>,
    fft: Vec<Complex<f32>>,
    /// The noise of one field.
    normals: Vec<f32>,
}

impl Plans {
    pub(crate) fn new(n: usize) -> Self {
        let fft = FftPlanner::<f32>::new().plan_fft_inverse(n);
        Plans { n, w: n / 2 + 1, fft }
    }

    pub(crate) fn scratch(&self) -> Scratch {
        let (n, w) = (self.n, self.w);
        let fft_len = self.fft.get_inplace_scratch_len();
        Scratch {
            spectrum: vec![Complex::default(); w * column_stride(n)],
            rows: vec![Complex::default(); n.div_ceil(2) * n],
            field: vec![0.0; n * n],
            buckets: vec![0; n * n],
            counts: Box::new([[0; BUCKETS]; 4]),
            keys: Vec::with_capacity(n * n),
            fft: vec![Complex::default(); fft_len],
            normals: vec![0.0; 2 * w * n],
        }
    }

    /// The transfer function `H(ω) = exp(-ωᵀ C ω / 2)` of a Gaussian kernel of
    /// covariance `cov` (pixels², x = columns), at the lattice frequencies
    /// `ω = 2π k / n`. At the Nyquist frequency of an even `n`, where `+π` and
    /// `-π` are the same frequency, `H` is the mean over both, which keeps it
    /// even (`H(-k) = H(k)`) so that the field stays real.
    pub(crate) fn transfer(&self, cov: [[f64; 2]; 2]) -> Transfer {
        let (n, w) = (self.n, self.w);
        let aliases = |k: usize| -> ([f64; 2], usize) {
            let signed = if k <= n / 2 { k as f64 } else { k as f64 - n as f64 };
            let omega = 2.0 * PI * signed / n as f64;
            if n & 1 == 0 && k == n / 2 {
                ([omega, -omega], 2)
            } else {
                ([omega, 0.0], 1)
            }
        };
        let mut h = vec![0.0f32; w * n];
        let mut active = vec![false; w];
        for kx in 0..w {
            let (wx, nx) = aliases(kx);
            for ky in 0..n {
                let (wy, ny) = aliases(ky);
                let mut sum = 0.0;
                for &ox in &wx[..nx] {
                    for &oy in &wy[..ny] {
                        let q = cov[0][0] * ox * ox + 2.0 * cov[0][1] * ox * oy + cov[1][1] * oy * oy;
                        sum += (-0.5 * q).exp();
                    }
                }
                let value = sum / (nx * ny) as f64;
                if value >= TRANSFER_CUTOFF {
                    h[kx * n + ky] = value as f32;
                    active[kx] = true;
                }
            }
        }
        let runs: Vec<Vec<(usize, usize)>> = (0..w)
            .map(|kx| {
                let col = &h[kx * n..(kx + 1) * n];
                let mut runs = Vec::new();
                let mut ky = 0;
                while ky < n {
                    if col[ky] == 0.0 {
                        ky += 1;
                        continue;
                    }
                    let start = ky;
                    while ky < n && col[ky] != 0.0 {
                        ky += 1;
                    }
                    runs.push((start, ky));
                }
                runs
            })
            .collect();
        let normals = (0..w)
            .map(|kx| {
                let col = &h[kx * n..(kx + 1) * n];
                if self.self_mirrored(kx) {
                    (0..=n / 2)
                        .filter(|&ky| col[ky] != 0.0)
                        .map(|ky| if (n - ky) % n == ky { 1 } else { 2 })
                        .sum()
                } else {
                    runs[kx].iter().map(|(a, b)| 2 * (b - a)).sum::<usize>()
                }
            })
            .sum();
        Transfer { h, active, runs, normals }
    }

    /// Columns kx = 0 and (even n) kx = n/2 are their own mirror image: their
    /// values pair up as W(-ky) = conj W(ky).
    fn self_mirrored(&self, kx: usize) -> bool {
        kx == 0 || (self.n & 1 == 0 && kx == self.n / 2)
    }

    /// Draws one field from `rng` and thresholds it: `out` gets 255 at its
    /// `white` largest values and 0 elsewhere.
    ///
    /// On x86-64 CPUs with AVX2 the same code is compiled a second time for
    /// AVX2 and picked at run time. No fused multiply-add is enabled, so both
    /// versions round alike and give the same bytes.
    pub(crate) fn render(
        &self,
        transfer: &Transfer,
        rng: &mut CounterRng,
        scratch: &mut Scratch,
        white: usize,
        out: &mut [u8],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.render_avx2(transfer, rng, scratch, white, out) };
        }
        self.render_portable(transfer, rng, scratch, white, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn render_avx2(
        &self,
        transfer: &Transfer,
        rng: &mut CounterRng,
        scratch: &mut Scratch,
        white: usize,
        out: &mut [u8],
    ) {
        self.render_portable(transfer, rng, scratch, white, out)
    }

    #[inline(always)]
    fn render_portable(
        &self,
        transfer: &Transfer,
        rng: &mut CounterRng,
        scratch: &mut Scratch,
        white: usize,
        out: &mut [u8],
    ) {
        self.field(transfer, rng, scratch);
        threshold(scratch, white, out);
    }

    /// Draws one blurred field into `scratch.field` (`n x n`, row-major),
    /// taking all its randomness from `rng`.
    #[inline(always)]
    fn field(&self, transfer: &Transfer, rng: &mut CounterRng, scratch: &mut Scratch) {
        let (n, w, stride) = (self.n, self.w, column_stride(self.n));
        let noise = &mut scratch.normals[..transfer.normals];
        rng.fill_normals(noise);
        let mut next = 0;
        for kx in 0..w {
            let col = &mut scratch.spectrum[kx * stride..kx * stride + n];
            let h = &transfer.h[kx * n..(kx + 1) * n];
            col.fill(Complex::default());
            if !transfer.active[kx] {
                continue;
            }
            if self.self_mirrored(kx) {
                for ky in 0..=n / 2 {
                    let (partner, hv) = ((n - ky) % n, h[ky]);
                    if hv == 0.0 {
                        continue;
                    }
                    if partner == ky {
                        col[ky] = Complex::new(SQRT_2 as f32 * noise[next] * hv, 0.0);
                        next += 1;
                    } else {
                        let (re, im) = (noise[next] * hv, noise[next + 1] * hv);
                        col[ky] = Complex::new(re, im);
                        col[partner] = Complex::new(re, -im);
                        next += 2;
                    }
                }
            } else {
                for &(a, b) in &transfer.runs[kx] {
                    let z = &noise[next..next + 2 * (b - a)];
                    for ((c, &hv), z) in col[a..b].iter_mut().zip(&h[a..b]).zip(z.chunks_exact(2)) {
                        *c = Complex::new(z[0] * hv, z[1] * hv);
                    }
                    next += 2 * (b - a);
                }
            }
            self.fft.process_with_scratch(col, &mut scratch.fft);
        }
        // Rows two at a time: the half spectra R1, R2 of real rows y1, y2
        // (after the column transforms) make the full spectrum
        // Z = R1 + i R2 (R(n-k) = conj R(k)) of the complex row y1 + i y2,
        // so one complex inverse FFT gives both rows.
        let pairs = n.div_ceil(2);
        let spectrum = &scratch.spectrum;
        let at = |k: usize, y: usize| if y < n { spectrum[k * stride + y] } else { Complex::default() };
        for (p, row) in scratch.rows[..pairs * n].chunks_exact_mut(n).enumerate() {
            let (y1, y2) = (2 * p, 2 * p + 1);
            // The self-mirrored columns are real by construction: drop the rounding residue.
            row[0] = Complex::new(at(0, y1).re, at(0, y2).re);
            if n & 1 == 0 {
                row[n / 2] = Complex::new(at(n / 2, y1).re, at(n / 2, y2).re);
            }
            for k in 1..n.div_ceil(2) {
                let (r1, r2) = (at(k, y1), at(k, y2));
                row[k] = Complex::new(r1.re - r2.im, r1.im + r2.re);
                row[n - k] = Complex::new(r1.re + r2.im, r2.re - r1.im);
            }
        }
        let rows = &mut scratch.rows[..pairs * n];
        self.fft.process_with_scratch(rows, &mut scratch.fft);
        for (p, row) in rows.chunks_exact(n).enumerate() {
            let (top, rest) = scratch.field[2 * p * n..].split_at_mut(n);
            for (f, z) in top.iter_mut().zip(row) {
                *f = z.re;
            }
            if let Some(bottom) = rest.get_mut(..n) {
                for (f, z) in bottom.iter_mut().zip(row) {
                    *f = z.im;
                }
            }
        }
    }
}

/// An order-preserving map from f32 to u32 (`a < b` iff `key(a) < key(b)` for non-NaN values).
#[inline(always)]
fn key(v: f32) -> u32 {
    let b = v.to_bits();
    // Negative: flip all bits; positive: set the sign bit.
    b ^ (((b as i32) >> 31) as u32 | 0x8000_0000)
}

/// Buckets of the histogram that narrows the quantile search.
const BUCKETS: usize = 2048;

/// Writes 255 at the `white` largest values of `scratch.field` and 0 elsewhere.
/// Ties at the threshold go to the lowest indices, so the result is a pure
/// function of the field.
///
/// A histogram over [min, max] finds the bucket holding the threshold (the
/// bucket index is a monotone function of the value, so bucket order is value
/// order), and only that bucket's few values go through
/// `select_nth_unstable`: a few linear passes, most of them vectorised.
#[inline(always)]
fn threshold(scratch: &mut Scratch, white: usize, out: &mut [u8]) {
    let Scratch { field, buckets, counts, keys, .. } = scratch;
    let len = field.len();
    if white == 0 || white >= len {
        out.fill(if white == 0 { 0 } else { 255 });
        return;
    }
    let (lo, hi) =
        field.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = if hi > lo { (BUCKETS as f32 - 1.0) / (hi - lo) } else { 0.0 };
    // Bucket = (v - lo) * scale rounded to the nearest integer, read from the
    // mantissa after adding 2^23 (exact for 0 <= x < 2^22; rounding is
    // monotone, so bucket order is value order). Plain bit operations vectorise.
    const MAGIC: f32 = 8_388_608.0;
    for (b, &v) in buckets.iter_mut().zip(field.iter()) {
        let x = (v - lo) * scale + MAGIC;
        *b = (x.to_bits() & 0x7f_ffff).min(BUCKETS as u32 - 1) as u16;
    }
    // Four interleaved tables, so that runs of equal buckets do not wait on each other's stores.
    // (The masks are no-ops, buckets are below BUCKETS; they let the compiler drop bounds checks.)
    for table in counts.iter_mut() {
        table.fill(0);
    }
    let mut quads = buckets.chunks_exact(4);
    for q in &mut quads {
        for (table, &b) in counts.iter_mut().zip(q) {
            table[b as usize & (BUCKETS - 1)] += 1;
        }
    }
    for &b in quads.remainder() {
        counts[0][b as usize & (BUCKETS - 1)] += 1;
    }
    let count = |b: usize| counts.iter().map(|table| table[b] as usize).sum::<usize>();
    // Walk down from the top bucket until `white` values are covered.
    let (mut target, mut above) = (BUCKETS - 1, 0usize);
    while above + count(target) < white {
        above += count(target);
        target -= 1;
    }
    let target = target as u16;
    // The target bucket's keys; most chunks have none, which a vectorised test sees.
    keys.clear();
    for (bs, vs) in buckets.chunks(32).zip(field.chunks(32)) {
        if bs.iter().fold(false, |any, &b| any | (b == target)) {
            keys.extend(bs.iter().zip(vs).filter(|(&b, _)| b == target).map(|(_, &v)| key(v)));
        }
    }
    // The threshold is the (white - above)-th largest candidate.
    let pos = keys.len() - (white - above);
    let (_, &mut t, rest) = keys.select_nth_unstable(pos);
    // Values equal to t above `pos` are taken too; are all values equal to t taken?
    let take = 1 + rest.iter().filter(|&&k| k == t).count();
    let equal = keys.iter().filter(|&&k| k == t).count();
    if take == equal {
        for (o, &v) in out.iter_mut().zip(field.iter()) {
            *o = if key(v) >= t { 255 } else { 0 };
        }
    } else {
        // Some ties stay black: the lowest indices win.
        let mut ties = take;
        for (o, &v) in out.iter_mut().zip(field.iter()) {
            let k = key(v);
            let take_tie = k == t && ties > 0;
            ties -= usize::from(take_tie);
            *o = if k > t || take_tie { 255 } else { 0 };
        }
    }
}
