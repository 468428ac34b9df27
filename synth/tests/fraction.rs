//! The measured white fraction is the target to within one pixel, for every image.

use furcate_synth::{generate, Morphology, Plane, SynthConfig, SynthImage};

fn small_default() -> SynthConfig {
    SynthConfig { size: 32, images_per_class: 2, ..SynthConfig::default() }
}

/// Checks pixels, measured fraction and target of every image; returns the targets.
fn check_fractions(cfg: &SynthConfig, images: &[SynthImage]) -> Vec<f64> {
    let n2 = (cfg.size * cfg.size) as f64;
    let labels = cfg.class_labels();
    assert_eq!(images.len(), cfg.image_count());
    images
        .iter()
        .map(|img| {
            assert_eq!(img.pixels.len(), cfg.size * cfg.size);
            assert!(img.pixels.iter().all(|&p| p == 0 || p == 255), "image {} is not binary", img.index);
            let white = img.pixels.iter().filter(|&&p| p == 255).count() as f64;
            assert_eq!(img.volume_fraction, white / n2, "image {}: reported fraction", img.index);
            assert!(
                (img.volume_fraction - img.target_fraction).abs() <= 1.0 / n2,
                "image {}: measured {} target {}",
                img.index,
                img.volume_fraction,
                img.target_fraction
            );
            assert_eq!(img.volume_fraction_class, labels[img.class_index]);
            assert_eq!(img.morphology, cfg.morphologies[img.morphology_index].name);
            img.target_fraction
        })
        .collect()
}

#[test]
fn every_default_image_hits_its_class_fraction() {
    let cfg = small_default();
    let images = generate(&cfg).unwrap();
    let targets = check_fractions(&cfg, &images);
    for (img, t) in images.iter().zip(targets) {
        assert_eq!(t, cfg.volume_fractions[img.class_index], "no jitter: the target is the class value");
    }
    // Ordered by morphology, then class, then repeat.
    let order: Vec<(usize, usize)> = images.iter().map(|i| (i.morphology_index, i.class_index)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn jittered_targets_spread_inside_their_bins() {
    let mut cfg = small_default();
    cfg.jitter = 1.0;
    cfg.images_per_class = 6;
    cfg.morphologies.truncate(2);
    let images = generate(&cfg).unwrap();
    let targets = check_fractions(&cfg, &images);
    let mut moved = 0;
    for (img, t) in images.iter().zip(&targets) {
        let class = cfg.volume_fractions[img.class_index];
        // Default classes are 0.05 apart: half-width 0.025.
        assert!((t - class).abs() <= 0.025 + 1e-12, "target {t} outside the bin of {class}");
        moved += usize::from((t - class).abs() > 1e-6);
    }
    assert!(moved > images.len() * 9 / 10, "jitter moved only {moved} of {} targets", images.len());
}

#[test]
fn odd_sizes_tilted_planes_and_extreme_fractions() {
    let cfg = SynthConfig {
        size: 33,
        images_per_class: 3,
        seed: 11,
        volume_fractions: vec![0.001, 0.37, 0.999],
        jitter: 0.0,
        morphologies: vec![
            Morphology {
                name: "tilted".into(),
                sigma_x: 4.0,
                sigma_y: 1.5,
                sigma_z: 2.5,
                plane: Plane::Normal([0.3, -0.5, 0.8]),
                rotation: 20.0,
            },
            Morphology {
                name: "fine".into(),
                sigma_x: 0.7,
                sigma_y: 0.7,
                sigma_z: 0.7,
                plane: Plane::Yz,
                rotation: 0.0,
            },
        ],
    };
    let images = generate(&cfg).unwrap();
    check_fractions(&cfg, &images);
    // 0.001 of 1089 pixels rounds to 1 white pixel, 0.999 to 1088.
    let white = |img: &SynthImage| img.pixels.iter().filter(|&&p| p == 255).count();
    assert_eq!(white(&images[0]), 1);
    assert_eq!(white(&images[2 * 3]), 1088);
    assert_eq!(cfg.class_labels(), ["0.001", "0.370", "0.999"]);
}
