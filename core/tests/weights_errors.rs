//! Bad weights files give clear `Error::Weights` naming the file and what is
//! wrong; an f16 file still runs in f32.

use std::path::{Path, PathBuf};

use crate::common::{cpu_config, rel_err};
use furcate_core::extractor::efficientnet_lite0::EfficientNetLite0;
use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::extractor::resnet50::ResNet50;
use furcate_core::{BuildContext, Error, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const SIZE: i64 = 32;

/// A complete, valid EfficientNet-Lite0 weights file with random values, and its tensors.
fn valid_lite0(dir: &Path) -> (PathBuf, Vec<(String, Tensor)>) {
    // Channels-last variables are not contiguous, which safetensors cannot store.
    let cfg = BackboneConfig { channels_last: false, ..cpu_config(None, SIZE) };
    let net = EfficientNetLite0::new(&cfg, &BuildContext::default()).unwrap();
    let path = dir.join("valid.safetensors");
    net.var_store().save(&path).unwrap();
    let tensors = Tensor::read_safetensors(&path).unwrap();
    (path, tensors)
}

/// The message of the `Error::Weights` that building from `path` gives; fails on any other outcome.
fn lite0_weights_error(path: &Path) -> String {
    match EfficientNetLite0::new(&cpu_config(Some(path.to_path_buf()), SIZE), &BuildContext::default()) {
        Err(Error::Weights { path: p, message }) => {
            assert_eq!(p, path);
            message
        }
        Err(e) => panic!("expected a weights error, got {e}"),
        Ok(_) => panic!("{} was accepted", path.display()),
    }
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let message = lite0_weights_error(&dir.path().join("absent.safetensors"));
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let (valid, _) = valid_lite0(dir.path());
    let bytes = std::fs::read(&valid).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 100, 5] {
        let cut = dir.path().join(format!("cut{keep}.safetensors"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let message = lite0_weights_error(&cut);
        assert!(message.contains("truncated") || message.contains("too short"), "{keep} bytes: {message}");
    }
}

#[test]
fn not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    // Deterministic noise: a linear congruential generator.
    let mut state = 12345u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    let mut json_like = 20u64.to_le_bytes().to_vec();
    json_like.extend_from_slice(b"this is not json....");
    for (name, bytes) in
        [("noise", noise), ("text", b"{\"hello\": 1} and more text".to_vec()), ("json", json_like)]
    {
        let path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let message = lite0_weights_error(&path);
        assert!(
            message.contains("not a safetensors file") || message.contains("truncated"),
            "{name}: {message}"
        );
    }
}

/// One tensor of the wrong shape and one missing: both are named in one error,
/// with the shapes.
#[test]
fn wrong_shape_and_missing_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (_, tensors) = valid_lite0(dir.path());
    let edited: Vec<(String, Tensor)> = tensors
        .into_iter()
        .filter(|(n, _)| n != "_blocks.3._bn1.running_var")
        .map(|(n, t)| if n == "_conv_head.weight" { (n, t.view([1280, 320])) } else { (n, t) })
        .collect();
    let path = dir.path().join("edited.safetensors");
    Tensor::write_safetensors(&edited, &path).unwrap();
    let message = lite0_weights_error(&path);
    assert!(message.contains("1 tensor(s) missing: _blocks.3._bn1.running_var"), "{message}");
    assert!(
        message.contains("_conv_head.weight is [1280, 320] in the file, the network wants [1280, 320, 1, 1]"),
        "{message}"
    );
}

/// A file of another network: every tensor is missing, and the message says
/// so in one short line: the first five names (sorted) and how many more,
/// not every one of the network's names.
#[test]
fn weights_of_another_network() {
    let dir = tempfile::tempdir().unwrap();
    let (lite0, _) = valid_lite0(dir.path());
    let err = ResNet50::new(&cpu_config(Some(lite0.clone()), SIZE), &BuildContext::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{message}");
    assert!(message.contains("another network"), "{message}");

    let random = ResNet50::new(&cpu_config(None, SIZE), &BuildContext::default()).unwrap();
    let mut names: Vec<String> = random.var_store().variables().into_keys().collect();
    names.sort();
    assert!(names.len() > 100, "ResNet50 has {} variables", names.len());
    let listed = names[..5].join(", ");
    assert!(
        message.contains(&format!(
            "{} tensor(s) missing: {listed}, and {} more",
            names.len(),
            names.len() - 5
        )),
        "{message}"
    );
    assert!(!message.contains(&names[5]), "the sixth name is listed: {message}");
    assert!(!message.contains(names.last().unwrap()), "the last name is listed: {message}");
    assert!(message.len() < 400, "{} characters: {message}", message.len());
}

/// Every convolution of the wrong shape: the count of them, with the shapes
/// of the first five only.
#[test]
fn many_wrong_shapes_give_a_short_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_, tensors) = valid_lite0(dir.path());
    let mut reshaped: Vec<String> = Vec::new();
    let edited: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            if t.dim() == 4 {
                reshaped.push(n.clone());
                let flat = t.flatten(1, -1);
                (n, flat)
            } else {
                (n, t)
            }
        })
        .collect();
    reshaped.sort();
    assert!(reshaped.len() > 20, "{} convolutions", reshaped.len());
    let path = dir.path().join("flat.safetensors");
    Tensor::write_safetensors(&edited, &path).unwrap();
    let message = lite0_weights_error(&path);
    assert!(
        message.contains(&format!("{} with the wrong shape: {} is [", reshaped.len(), reshaped[0])),
        "{message}"
    );
    assert!(message.contains(&format!("and {} more", reshaped.len() - 5)), "{message}");
    assert!(message.contains(&reshaped[4]) && !message.contains(&format!("{} is", reshaped[5])), "{message}");
    assert!(!message.contains("missing"), "{message}");
    assert!(message.len() < 600, "{} characters: {message}", message.len());
}

/// An f16 file fills an f32 network: the variables stay f32 and the features
/// equal those of an f32 file holding the same (f16-rounded) values.
#[test]
fn f16_file_runs_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let (_, tensors) = valid_lite0(dir.path());
    let half: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.to_kind(Kind::Half))).collect();
    let rounded: Vec<(String, Tensor)> =
        half.iter().map(|(n, t)| (n.clone(), t.to_kind(Kind::Float))).collect();
    let (half_path, rounded_path) = (dir.path().join("f16.safetensors"), dir.path().join("f32.safetensors"));
    Tensor::write_safetensors(&half, &half_path).unwrap();
    Tensor::write_safetensors(&rounded, &rounded_path).unwrap();

    let from_half =
        EfficientNetLite0::new(&cpu_config(Some(half_path), SIZE), &BuildContext::default()).unwrap();
    let from_f32 =
        EfficientNetLite0::new(&cpu_config(Some(rounded_path), SIZE), &BuildContext::default()).unwrap();
    for (name, var) in from_half.var_store().variables() {
        assert_eq!(var.kind(), Kind::Float, "{name}");
    }
    tch::manual_seed(9);
    let images = Tensor::rand([2, 3, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let a = from_half.extract(&images).unwrap();
    assert_eq!(a.kind(), Kind::Float);
    assert!(rel_err(&a, &from_f32.extract(&images).unwrap()) < 1e-6);
}
