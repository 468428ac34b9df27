//! The `resnet50` extractor: parity with torchvision on the same weights,
//! its configuration, and its behaviour without weights.

use crate::common::{assert_taps_match, cpu_config, python_with, read_tensors, rel_err, run_reference};
use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::extractor::resnet50::{ResNet50, ResNet50Config};
use furcate_core::extractor::taps::Pool;
use furcate_core::{BuildContext, Error, ExtractorConfig, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const SIZE: i64 = 64;

/// torchvision 0.26's resnet50 and ours, on the same random weights (saved to
/// safetensors by the Python side, `fc.*` and `num_batches_tracked` included)
/// and the same images: pooled features agree to 1e-4 relative
/// (max abs difference / max abs reference), channels-last or not.
#[test]
fn parity_with_torchvision() {
    let Some(py) = python_with(&["torch", "torchvision", "safetensors"]) else { return };
    let dir = run_reference(&py, "resnet50_reference.py", &[&SIZE.to_string(), "2", "7"]);
    let weights = dir.path().join("weights.safetensors");
    let io = read_tensors(&dir.path().join("io.safetensors"));
    let (images, reference) = (&io["images"], &io["features"]);

    for channels_last in [true, false] {
        let cfg = BackboneConfig { channels_last, ..cpu_config(Some(weights.clone()), SIZE) };
        let net = ResNet50::new(&cfg, &BuildContext::default()).unwrap();
        let ours = net.extract(images).unwrap();
        assert_eq!(ours.size(), [2, 2048]);
        assert_eq!(ours.kind(), Kind::Float);
        let err = rel_err(&ours, reference);
        eprintln!("channels_last = {channels_last}: relative error {err:e}");
        assert!(err <= 1e-4, "channels_last = {channels_last}: relative error {err:e} > 1e-4");
        let sha = furcate_core::fsutil::sha256_file(&weights).unwrap();
        assert_eq!(net.weights_sha256(), Some(sha));
    }
}

/// Every tap, pooled by mean and standard deviation, equals torchvision's
/// activation there (forward hooks) pooled the same way, to 1e-5 relative;
/// `extract` is the taps side by side, a subset of taps comes from one
/// shallower pass, and the last tap's mean is the untapped features.
#[test]
fn taps_parity_with_torchvision() {
    let Some(py) = python_with(&["torch", "torchvision", "safetensors"]) else { return };
    let dir = run_reference(&py, "resnet50_reference.py", &[&SIZE.to_string(), "2", "7"]);
    let weights = dir.path().join("weights.safetensors");
    let io = read_tensors(&dir.path().join("io.safetensors"));
    let names = ["stem", "layer1", "layer2", "layer3", "layer4"];
    for channels_last in [true, false] {
        let cfg = BackboneConfig {
            channels_last,
            taps: Some(names.iter().map(|n| n.to_string()).collect()),
            pool: Pool::MeanStd,
            ..cpu_config(Some(weights.clone()), SIZE)
        };
        let net = ResNet50::new(&cfg, &BuildContext::default()).unwrap();
        let all: Vec<usize> = (0..names.len()).collect();
        let blocks = net.extract_taps(&io["images"], &all).unwrap();
        assert_taps_match(&blocks, &io, &names, 1e-5, &format!("channels_last = {channels_last}"));
        let whole = net.extract(&io["images"]).unwrap();
        assert_eq!(whole.size(), [2, 2 * (64 + 256 + 512 + 1024 + 2048)]);
        assert_eq!(net.output_dim(), whole.size()[1]);
        assert!(rel_err(&whole, &Tensor::cat(&blocks, 1)) == 0.0);
        let stem = net.extract_taps(&io["images"], &[0]).unwrap();
        assert!(rel_err(&stem[0], &blocks[0]) <= 1e-6);
        assert!(rel_err(&blocks[4].narrow(1, 0, 2048), &io["features"]) <= 1e-5);
    }
}

/// Unknown tap names list the valid ones; taps with trainable stages are refused.
#[test]
fn bad_taps_are_errors() {
    let cfg = BackboneConfig { taps: Some(vec!["layer9".into()]), ..cpu_config(None, SIZE) };
    let msg = ResNet50::new(&cfg, &BuildContext::default()).unwrap_err().to_string();
    assert!(msg.contains("layer9") && msg.contains("stem, layer1, layer2, layer3, layer4"), "{msg}");
    let cfg =
        BackboneConfig { taps: Some(vec!["stem".into()]), trainable_stages: 1, ..cpu_config(None, SIZE) };
    let msg = ResNet50::new(&cfg, &BuildContext::default()).unwrap_err().to_string();
    assert!(msg.contains("taps") && msg.contains("trainable_stages"), "{msg}");
}

/// Without a weights file the network is randomly initialised but usable:
/// `[N, 2048]` f32 features on the CPU, frozen variables, no SHA-256, and
/// grayscale input gives the same features as its 3-channel replication.
#[test]
fn random_init_grayscale_and_frozen() {
    let net = ResNet50::new(&cpu_config(None, SIZE), &BuildContext::default()).unwrap();
    assert_eq!(net.weights_sha256(), None);
    assert_eq!(net.output_dim(), 2048);
    assert_eq!(net.input_spec().size, SIZE);
    for (name, var) in net.var_store().variables() {
        assert!(!var.requires_grad(), "{name} is not frozen");
        assert_eq!(var.kind(), Kind::Float, "{name}");
    }
    tch::manual_seed(3);
    let gray = Tensor::rand([3, 1, SIZE, SIZE], (Kind::Float, Device::Cpu));
    let a = net.extract(&gray).unwrap();
    let b = net.extract(&gray.expand([3, 3, SIZE, SIZE], false)).unwrap();
    assert_eq!(a.size(), [3, 2048]);
    assert_eq!(a.device(), Device::Cpu);
    assert!(rel_err(&a, &b) < 1e-6);
    // Different images give different features (the network is not constant).
    let c = net.extract(&Tensor::rand([3, 1, SIZE, SIZE], (Kind::Float, Device::Cpu))).unwrap();
    assert!(rel_err(&a, &c) > 1e-3);
}

/// Wrong image sizes, channel counts and dtypes are errors, not panics.
#[test]
fn bad_images_are_errors() {
    let net = ResNet50::new(&cpu_config(None, 32), &BuildContext::default()).unwrap();
    let cases = [
        Tensor::rand([1, 3, 48, 48], (Kind::Float, Device::Cpu)),
        Tensor::rand([1, 2, 32, 32], (Kind::Float, Device::Cpu)),
        Tensor::rand([3, 32, 32], (Kind::Float, Device::Cpu)),
        Tensor::zeros([1, 3, 32, 32], (Kind::Uint8, Device::Cpu)),
    ];
    for images in cases {
        let err = net.extract(&images).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{:?}: {err}", images.size());
    }
}

/// The TOML table: defaults, unknown keys, small sizes and `cache:` paths.
#[test]
fn config_from_toml() {
    // It sets FURCATE_CACHE, which other tests read: alone in its own process.
    if !crate::alone!() {
        return;
    }
    let cfg: Box<dyn ExtractorConfig> = toml::from_str("type = \"resnet50\"\n").unwrap();
    assert_eq!(cfg.input_size(), 224);
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["type"], "resnet50");
    assert_eq!(json["batch_size"], 32);
    assert_eq!(json["precision"], "f32");
    assert_eq!(json["normalisation"], "imagenet");

    let full = "type = \"resnet50\"\nsize = 128\ndevice = \"cpu\"\nbatch_size = 4\nchannels_last = false\n\
                precision = \"bf16\"\ncudnn_benchmark = true\nnormalisation = \"symmetric\"\n";
    let cfg: Box<dyn ExtractorConfig> = toml::from_str(full).unwrap();
    assert_eq!(cfg.input_size(), 128);

    let unknown = toml::from_str::<Box<dyn ExtractorConfig>>("type = \"resnet50\"\nsizes = 64\n");
    assert!(unknown.unwrap_err().to_string().contains("sizes"));
    let bad_precision =
        toml::from_str::<Box<dyn ExtractorConfig>>("type = \"resnet50\"\nprecision = \"f8\"\n");
    assert!(bad_precision.is_err());

    let small = ResNet50Config(cpu_config(None, 31)).build(&BuildContext::default()).err();
    assert!(small.expect("size 31 is refused").to_string().contains("at least 32"));

    // `cache:NAME` is a file of the weights cache.
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("FURCATE_CACHE", cache.path());
    let cfg: Box<dyn ExtractorConfig> =
        toml::from_str("type = \"resnet50\"\nweights = \"cache:absent.safetensors\"\ndevice = \"cpu\"\n")
            .unwrap();
    match cfg.build(&BuildContext::default()).err() {
        Some(Error::Weights { path, .. }) => {
            assert_eq!(path, cache.path().join("weights/absent.safetensors"))
        }
        e => panic!("expected a weights error, got {e:?}"),
    }
}
