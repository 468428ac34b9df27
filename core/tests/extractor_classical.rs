//! The weight-free extractors: `two_point` (one-phase images, stripes, grey
//! input, periodic and padded, shapes, config errors) and `concat`.

use furcate_core::extractor::concat::ConcatConfig;
use furcate_core::extractor::two_point::{lags, TwoPointConfig};
use furcate_core::{BuildContext, ExtractorConfig, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

fn two_point(config: TwoPointConfig) -> Box<dyn FeatureExtractor> {
    config.build(&BuildContext::default()).unwrap()
}

fn small(periodic: bool) -> TwoPointConfig {
    TwoPointConfig { size: 32, window: 8, stride: 2, periodic, ..TwoPointConfig::default() }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

#[test]
fn one_phase_images_give_a_flat_autocorrelation() {
    for periodic in [true, false] {
        let e = two_point(small(periodic));
        let features = e.extract(&Tensor::ones([1, 1, 32, 32], F32)).unwrap();
        assert_eq!(features.size(), [1, e.output_dim()]);
        assert!(values(&features).iter().all(|v| (v - 1.0).abs() < 1e-5), "periodic {periodic}");
        let features = e.extract(&Tensor::zeros([1, 3, 32, 32], F32)).unwrap();
        assert!(values(&features).iter().all(|v| v.abs() < 1e-5), "periodic {periodic}");
    }
}

#[test]
fn grey_images_are_thresholded() {
    let grey = Tensor::full([1, 1, 32, 32], 0.7, F32);
    let at = |threshold: f64| {
        let e = two_point(TwoPointConfig { threshold, ..small(true) });
        values(&e.extract(&grey).unwrap())
    };
    assert!(at(0.5).iter().all(|v| (v - 1.0).abs() < 1e-5));
    assert!(at(0.8).iter().all(|v| v.abs() < 1e-5));
}

/// Vertical stripes: columns `x % 8 < 4` are phase 1.
fn stripes(side: i64) -> Tensor {
    let x = Tensor::arange(side, (Kind::Int64, Device::Cpu)).remainder(8).lt(4).to_kind(Kind::Float);
    x.view([1, 1, 1, side]).expand([1, 1, side, side], false).contiguous()
}

#[test]
fn stripes_give_the_expected_anisotropic_autocorrelation() {
    let config = small(true);
    let e = two_point(config.clone());
    let f = values(&e.extract(&stripes(32)).unwrap());
    assert!((f[0] - 0.5).abs() < 1e-6, "fraction {}", f[0]);
    for (i, &(dy, dx)) in lags(config.window, config.stride).iter().enumerate() {
        // Along a column the phase never changes; across, a triangle of period 8.
        let d = dx.rem_euclid(8).min(8 - dx.rem_euclid(8));
        let expected = (4 - d) as f64 / 8.0;
        assert!((f[i + 1] - expected).abs() < 1e-5, "lag ({dy}, {dx}): {} vs {expected}", f[i + 1]);
    }
    // Padded: the same values where pairs overlap fully in x, by symmetry of the stripes.
    let f = values(&two_point(small(false)).extract(&stripes(32)).unwrap());
    let at = |lag: (i64, i64)| f[1 + lags(8, 2).iter().position(|l| *l == lag).unwrap()];
    assert!((at((8, 0)) - 0.5).abs() < 1e-5);
    assert!(at((0, 4)).abs() < 1e-5);
    // Transposed stripes swap the roles of dx and dy.
    let t = values(&two_point(small(false)).extract(&stripes(32).transpose(2, 3)).unwrap());
    let at_t = |lag: (i64, i64)| t[1 + lags(8, 2).iter().position(|l| *l == lag).unwrap()];
    assert!((at_t((4, 0))).abs() < 1e-5);
    assert!((at_t((0, 8)) - 0.5).abs() < 1e-5);
}

#[test]
fn width_is_output_dim_for_any_size_from_32() {
    let e = two_point(TwoPointConfig::default());
    assert_eq!(e.output_dim(), 145);
    assert_eq!(e.input_spec().size, 128);
    for side in [33, 48] {
        let images = Tensor::rand([3, 3, side, side], F32);
        assert_eq!(e.extract(&images).unwrap().size(), [3, 145]);
    }
    let config = TwoPointConfig { window: 5, stride: 1, ..small(false) };
    assert_eq!(lags(5, 1).len(), (11 * 11 - 1) / 2);
    assert_eq!(two_point(config).extract(&Tensor::rand([2, 1, 40, 36], F32)).unwrap().size(), [2, 61]);
    assert!(e.extract(&Tensor::rand([1, 1, 20, 20], F32)).is_err());
    assert!(e.extract(&Tensor::rand([1, 20, 20], F32)).is_err());
}

#[test]
fn bad_configs_are_errors_naming_the_field() {
    let err = |c: TwoPointConfig| c.build(&BuildContext::default()).err().map(|e| e.to_string()).unwrap();
    assert!(err(TwoPointConfig { size: 16, ..TwoPointConfig::default() }).contains("size"));
    assert!(err(TwoPointConfig { window: 64, ..TwoPointConfig::default() }).contains("window"));
    assert!(err(TwoPointConfig { stride: 0, ..TwoPointConfig::default() }).contains("stride"));
    assert!(err(TwoPointConfig { threshold: f64::NAN, ..TwoPointConfig::default() }).contains("threshold"));
    assert!(toml::from_str::<Box<dyn ExtractorConfig>>("type = \"two_point\"\nradius = 3").is_err());
    let c: Box<dyn ExtractorConfig> = toml::from_str("type = \"two_point\"").unwrap();
    assert_eq!(c.input_size(), 128);
}

#[test]
fn concat_puts_the_parts_side_by_side() {
    let config: Box<dyn ExtractorConfig> = toml::from_str(
        "type = \"concat\"\nextractors = [{ type = \"two_point\", size = 64, window = 4 }, \
         { type = \"two_point\", size = 32, window = 4, threshold = 0.8 }]",
    )
    .unwrap();
    assert_eq!(config.input_size(), 64);
    let e = config.build(&BuildContext::default()).unwrap();
    assert_eq!(e.output_dim(), 26);
    assert_eq!(e.weights_sha256(), None);
    let images = Tensor::full([2, 1, 64, 64], 0.7, F32);
    let f = e.extract(&images).unwrap();
    assert_eq!(f.size(), [2, 26]);
    // Part 0 sees phase 1 everywhere, part 1 (threshold 0.8, resized to 32) nothing.
    let v = values(&f);
    assert!(v[..13].iter().all(|x| (x - 1.0).abs() < 1e-5) && v[13..26].iter().all(|x| x.abs() < 1e-5));
    let part = two_point(TwoPointConfig { size: 64, window: 4, ..TwoPointConfig::default() });
    let stripes = stripes(64);
    let both = e.extract(&stripes).unwrap();
    assert!(both.narrow(1, 0, 13).allclose(&part.extract(&stripes).unwrap(), 1e-6, 1e-6, false));

    let empty = toml::from_str::<Box<dyn ExtractorConfig>>("type = \"concat\"\nextractors = []").unwrap();
    assert!(empty.build(&BuildContext::default()).err().unwrap().to_string().contains("extractors"));
    let bad = ConcatConfig { extractors: vec![Box::new(TwoPointConfig { window: 0, ..small(true) })] };
    assert!(bad.build(&BuildContext::default()).err().unwrap().to_string().contains("extractors[0]"));
}

#[test]
fn concat_prefixes_only_the_tap_names_its_parts_share() {
    let c: Box<dyn ExtractorConfig> = toml::from_str(
        "type = \"concat\"\nextractors = [\
         { type = \"efficientnet_lite0\", weights = \"w.safetensors\", size = 128, taps = [\"stage1\", \"stage2\"] }, \
         { type = \"efficientnet_lite0\", weights = \"w.safetensors\", size = 256, \
           taps = [\"stem\", \"stage2\", \"stage2.mean_std\"] }]",
    )
    .unwrap();
    // `stage2` is in both passes; `stage2.mean_std` (another pool) and the rest in one.
    assert_eq!(c.tap_names(), ["stage1", "0.stage2", "stem", "1.stage2", "stage2.mean_std"]);
}

#[test]
fn registered_types_include_the_new_extractors() {
    let types = furcate_core::registry::extractor_types();
    assert!(types.contains(&"two_point".to_string()) && types.contains(&"concat".to_string()), "{types:?}");
}

/// Six 32-px PNG images with random black/white pixels and their manifest.
fn png_dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("file,phase\n");
    for i in 0..6u32 {
        let img = image::GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([if (x * 7 + y * 13 + i * 5) % (3 + i) == 0 { 255 } else { 0 }])
        });
        img.save(dir.join(format!("{i}.png"))).unwrap();
        csv.push_str(&format!("{i}.png,{}\n", i % 2));
    }
    let manifest = dir.join("m.csv");
    std::fs::write(&manifest, csv).unwrap();
    manifest
}

fn run_config(manifest: &std::path::Path, extractor: &str) -> furcate_core::config::LoadedConfig {
    let text = format!(
        "[data]\nmanifest = \"{}\"\nfeature_cache = \"features\"\n[extractor]\n{extractor}\n\
         [[heads]]\ntype = \"classification\"\nname = \"phase\"\n",
        manifest.display()
    );
    furcate_core::config::LoadedConfig::from_str(&text, &manifest.with_file_name("run.toml")).unwrap()
}

#[test]
fn concat_is_cached_part_by_part() {
    use furcate_core::progress::Silent;
    use furcate_core::run::features_for;
    let dir = tempfile::tempdir().unwrap();
    let manifest = png_dataset(dir.path());
    let features = |extractor: &str| {
        let cfg = run_config(&manifest, extractor);
        let data = furcate_core::data::Dataset::load(&cfg.config.data, &cfg.dir()).unwrap();
        let e = cfg.config.extractor.build(&cfg.build_context()).unwrap();
        let furcate_core::run::Features { features: f, stats, .. } =
            features_for(&cfg, e.as_ref(), &data, &mut Silent).unwrap();
        (f, stats.extracted, stats.hits)
    };
    let a = "type = \"two_point\"\nsize = 32\nwindow = 4";
    let b = "type = \"two_point\"\nsize = 32\nwindow = 8\nperiodic = false";
    let (fa, extracted, _) = features(a);
    assert_eq!(extracted, 6);
    let concat = "type = \"concat\"\nextractors = [{ type = \"two_point\", size = 32, window = 4 }, \
                  { type = \"two_point\", size = 32, window = 8, periodic = false }]";
    let (fc, extracted, hits) = features(concat);
    // Part `a` comes from its own cache entry; only part `b` was extracted.
    assert_eq!((extracted, hits), (6, 0));
    let cache_dirs = std::fs::read_dir(dir.path().join("features")).unwrap().count();
    assert_eq!(cache_dirs, 2, "one cache entry per part, none for the concat itself");
    let (fb, extracted, hits) = features(b);
    assert_eq!((extracted, hits), (0, 6), "part `b` alone reads what the concat cached");
    assert!(fc.equal(&Tensor::cat(&[fa, fb], 1)), "the concat is its parts side by side");
    let (again, extracted, _) = features(concat);
    assert_eq!(extracted, 0);
    assert!(again.equal(&fc));
}

/// A tapped extractor is cached tap by tap: after taps [stem, stage2] are
/// extracted, [stage2] alone and [stage2, stem] read the cache; adding stage1
/// extracts only stage1 (one pass); the untapped extractor and the tapped
/// `head` (mean pooling) share one cache entry. The layout names each tap
/// and its width.
#[test]
fn taps_are_cached_tap_by_tap() {
    // Random weights from a seed: no other test may draw from the global generator meanwhile.
    if !crate::alone!() {
        return;
    }
    use furcate_core::progress::Silent;
    use furcate_core::run::{features_for, Features};
    let dir = tempfile::tempdir().unwrap();
    let manifest = png_dataset(dir.path());
    let features = |taps: &str| {
        let extractor = format!("type = \"efficientnet_lite0\"\nsize = 32\ndevice = \"cpu\"\n{taps}");
        let cfg = run_config(&manifest, &extractor);
        let data = furcate_core::data::Dataset::load(&cfg.config.data, &cfg.dir()).unwrap();
        // Random weights, the same for every build.
        tch::manual_seed(0);
        let e = cfg.config.extractor.build(&cfg.build_context()).unwrap();
        let Features { features, layout, stats, .. } =
            features_for(&cfg, e.as_ref(), &data, &mut Silent).unwrap();
        (features, layout, stats.extracted)
    };
    let entries = || std::fs::read_dir(dir.path().join("features")).map(|d| d.count()).unwrap_or(0);
    let (both, layout, extracted) = features("taps = [\"stem\", \"stage2\"]");
    assert_eq!(extracted, 6);
    assert_eq!(layout.taps, vec![("stem".to_string(), 32), ("stage2".to_string(), 24)]);
    assert_eq!(both.size(), [6, 56]);
    assert_eq!(entries(), 2);
    let (stage2, _, extracted) = features("taps = [\"stage2\"]");
    assert_eq!(extracted, 0);
    assert!(stage2.equal(&both.narrow(1, 32, 24)));
    let (swapped, _, extracted) = features("taps = [\"stage2\", \"stem\"]");
    assert_eq!(extracted, 0);
    assert!(swapped.equal(&Tensor::cat(&[both.narrow(1, 32, 24), both.narrow(1, 0, 32)], 1)));
    let (three, _, extracted) = features("taps = [\"stem\", \"stage1\", \"stage2\"]");
    assert_eq!((extracted, entries()), (6, 3));
    assert!(three.narrow(1, 0, 32).equal(&both.narrow(1, 0, 32)));
    let (plain, layout, _) = features("");
    assert_eq!(layout.taps, vec![("head".to_string(), 1280)]);
    let (head, _, extracted) = features("taps = [\"head\"]");
    assert_eq!((extracted, entries()), (0, 4), "the untapped features are the head tap's entry");
    assert!(head.equal(&plain));
    let (std, _, _) = features("taps = [\"stem\"]\npool = \"mean_std\"");
    assert_eq!(std.size(), [6, 64]);
    assert!(std.narrow(1, 0, 32).allclose(&both.narrow(1, 0, 32), 1e-6, 1e-6, false));
}
