//! The anisotropy is real: correlation lengths measured on the binary images
//! follow the in-plane sigmas of the configured 3-D filter and section plane.
//!
//! For a Gaussian field thresholded at its median, the indicator's
//! correlation is `(2/π) asin(ρ)` of the field's correlation `ρ`, and along a
//! unit direction `e` the field's correlation is `exp(-t² / (4 σ_e²))` with
//! `1/σ_e² = eᵀ C2⁻¹ e` (C2 the in-plane kernel covariance). So `σ_e` can be
//! fitted from the images alone.

use furcate_synth::{generate, Morphology, Plane, SynthConfig, SynthImage};

/// Large enough for a few percent of statistical error in the fitted sigmas.
const SIZE: usize = 256;

fn morphology(sigmas: [f64; 3], plane: Plane, rotation: f64) -> Morphology {
    Morphology {
        name: "m".into(),
        sigma_x: sigmas[0],
        sigma_y: sigmas[1],
        sigma_z: sigmas[2],
        plane,
        rotation,
    }
}

fn images(m: Morphology) -> Vec<SynthImage> {
    images_of_size(m, SIZE)
}

fn images_of_size(m: Morphology, size: usize) -> Vec<SynthImage> {
    let cfg = SynthConfig {
        size,
        images_per_class: 8,
        seed: 2024,
        volume_fractions: vec![0.5],
        jitter: 0.0,
        morphologies: vec![m],
    };
    generate(&cfg).unwrap()
}

/// Kernel sigma along the lattice step `(dx, dy)`, in pixels, fitted to the
/// images' indicator correlation (periodic lags).
fn sigma_along(images: &[SynthImage], (dx, dy): (isize, isize)) -> f64 {
    let n = images[0].size as isize;
    let step = ((dx * dx + dy * dy) as f64).sqrt();
    let (mut num, mut den) = (0.0, 0.0);
    for lag in 1..40isize {
        let mut joint = 0.0;
        for img in images {
            let b = |x: isize, y: isize| {
                (img.pixels[(y.rem_euclid(n) * n + x.rem_euclid(n)) as usize] == 255) as u32
            };
            let mut hits = 0u64;
            for y in 0..n {
                for x in 0..n {
                    hits += u64::from(b(x, y) & b(x + lag * dx, y + lag * dy));
                }
            }
            joint += hits as f64 / (n * n) as f64;
        }
        joint /= images.len() as f64;
        // p = 1/2: covariance joint - 1/4 over variance 1/4.
        let rho_b = (joint - 0.25) / 0.25;
        let rho = (std::f64::consts::FRAC_PI_2 * rho_b).sin();
        if !(0.15..=0.9).contains(&rho) {
            if rho < 0.15 {
                break;
            }
            continue;
        }
        let t2 = (lag as f64 * step).powi(2);
        num += t2 * -rho.ln();
        den += t2 * t2;
    }
    assert!(den > 0.0, "no usable lags along ({dx}, {dy})");
    // -ln rho = t² / (4 σ²)
    1.0 / (2.0 * (num / den).sqrt())
}

fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got / want - 1.0).abs() <= tol,
        "{what}: measured {got:.3}, expected {want:.3} (tolerance {tol})"
    );
}

#[test]
fn axis_plane_gives_the_in_plane_sigmas() {
    // An odd size, which takes the other path through the FFT's symmetries.
    let imgs = images_of_size(morphology([4.0, 2.0, 7.0], Plane::Xy, 0.0), SIZE - 1);
    let (sx, sy) = (sigma_along(&imgs, (1, 0)), sigma_along(&imgs, (0, 1)));
    assert_close("sigma_x / sigma_y", sx / sy, 2.0, 0.10);
    assert_close("sigma_x", sx, 4.0, 0.15);
    assert_close("sigma_y", sy, 2.0, 0.15);
}

#[test]
fn other_planes_and_normals_give_their_sigmas() {
    // xz: image x = material x (2), image y = material z (4).
    let imgs = images(morphology([2.0, 9.0, 4.0], Plane::Xz, 0.0));
    assert_close("xz plane: x / y", sigma_along(&imgs, (1, 0)) / sigma_along(&imgs, (0, 1)), 0.5, 0.10);
    // Normal along x is the yz plane: image x = material y (4), image y = material z (2).
    let imgs = images(morphology([9.0, 4.0, 2.0], Plane::Normal([2.0, 0.0, 0.0]), 0.0));
    assert_close("normal [1,0,0]: x / y", sigma_along(&imgs, (1, 0)) / sigma_along(&imgs, (0, 1)), 2.0, 0.10);
}

#[test]
fn rotation_turns_the_anisotropy() {
    // 90 degrees: the long axis moves from x to y.
    let imgs = images(morphology([4.0, 2.0, 2.0], Plane::Xy, 90.0));
    assert_close("rotated 90: x / y", sigma_along(&imgs, (1, 0)) / sigma_along(&imgs, (0, 1)), 0.5, 0.10);
    // 45 degrees: long along the (1, 1) diagonal, short along (1, -1).
    let imgs = images(morphology([4.0, 2.0, 2.0], Plane::Xy, 45.0));
    let (along, across) = (sigma_along(&imgs, (1, 1)), sigma_along(&imgs, (1, -1)));
    assert_close("rotated 45: diagonal / anti-diagonal", along / across, 2.0, 0.10);
    assert_close("rotated 45: x / y", sigma_along(&imgs, (1, 0)) / sigma_along(&imgs, (0, 1)), 1.0, 0.10);
}

#[test]
fn in_plane_covariance_restricts_the_3d_one() {
    let m = |sigmas, plane| morphology(sigmas, plane, 0.0).in_plane_covariance().unwrap();
    let s = [2.0, 3.0, 5.0];
    assert_eq!(m(s, Plane::Xy), [[4.0, 0.0], [0.0, 9.0]]);
    assert_eq!(m(s, Plane::Xz), [[4.0, 0.0], [0.0, 25.0]]);
    assert_eq!(m(s, Plane::Yz), [[9.0, 0.0], [0.0, 25.0]]);
    let close = |a: [[f64; 2]; 2], b: [[f64; 2]; 2]| {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() < 1e-9 * (1.0 + y.abs()))
    };
    assert!(close(m(s, Plane::Normal([0.0, 0.0, 3.0])), m(s, Plane::Xy)));
    assert!(close(m(s, Plane::Normal([-1.0, 0.0, 0.0])), m(s, Plane::Yz)));
    // Isotropic filter: every plane sees the same sigma.
    let iso = m([4.0, 4.0, 4.0], Plane::Normal([0.3, 0.5, 0.7]));
    assert!(close(iso, [[16.0, 0.0], [0.0, 16.0]]), "{iso:?}");
    // A tilted plane mixes the sigmas: the in-plane variance along u is 1 / (uᵀ S⁻¹ u).
    let tilted = m(s, Plane::Normal([0.0, 1.0, 1.0]));
    // Image x = material x; image y = (0, 1, -1)/√2, precision (1/9 + 1/25) / 2.
    assert!(close(tilted, [[4.0, 0.0], [0.0, 2.0 / (1.0 / 9.0 + 1.0 / 25.0)]]), "{tilted:?}");
    assert!(morphology([1.0, 0.0, 1.0], Plane::Xy, 0.0).in_plane_covariance().is_none());
    assert!(morphology([1.0, 1.0, 1.0], Plane::Normal([0.0; 3]), 0.0).in_plane_covariance().is_none());
}
