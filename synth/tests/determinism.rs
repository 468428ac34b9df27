//! Same seed, same bytes, whatever the thread count; another seed, other images.

use furcate_synth::{generate, image_seed, Generator, SynthConfig, SynthImage};

fn cfg(seed: u64) -> SynthConfig {
    SynthConfig {
        size: 48,
        images_per_class: 2,
        volume_fractions: vec![0.1, 0.3, 0.5],
        seed,
        ..SynthConfig::default()
    }
}

fn on_threads(threads: usize, cfg: &SynthConfig) -> Vec<SynthImage> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| generate(cfg)).unwrap()
}

#[test]
fn same_seed_same_bytes_on_any_thread_count() {
    let c = cfg(5);
    let one = on_threads(1, &c);
    assert_eq!(one, generate(&c).unwrap());
    assert_eq!(one, on_threads(2, &c));
    assert_eq!(one, on_threads(3, &c));
    // Any image alone equals the same image made in a batch.
    let generator = Generator::new(&c).unwrap();
    for i in [0, 7, one.len() - 1] {
        assert_eq!(generator.image(i).unwrap(), one[i]);
    }
    assert_eq!(generator.images(5..9).unwrap(), one[5..9].to_vec());
    assert!(generator.image(one.len()).is_err());
}

#[test]
fn other_seeds_and_indices_give_other_images() {
    let a = generate(&cfg(5)).unwrap();
    let b = generate(&cfg(6)).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x.pixels, y.pixels, "image {} is the same under seeds 5 and 6", x.index);
        assert_ne!(x.seed, y.seed);
    }
    // Within one set no two images share noise.
    for (i, x) in a.iter().enumerate() {
        assert_eq!(x.seed, image_seed(5, i));
        for y in &a[i + 1..] {
            assert_ne!(x.pixels, y.pixels, "images {} and {} are equal", x.index, y.index);
        }
    }
}

#[test]
fn an_image_does_not_depend_on_the_rest_of_the_set() {
    // Image i depends on (seed, i, its morphology and fraction) only: adding
    // morphologies at the end leaves the earlier images as they were.
    let small = cfg(9);
    let mut big = small.clone();
    big.morphologies
        .push(furcate_synth::Morphology { name: "extra".into(), ..small.morphologies[0].clone() });
    let (a, b) = (generate(&small).unwrap(), generate(&big).unwrap());
    assert_eq!(a[..], b[..a.len()]);
}
