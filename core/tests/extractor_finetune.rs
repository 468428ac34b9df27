//! Partial fine-tuning (`trainable_stages`): the boundary features and the
//! trainable tail reproduce the frozen network, the configuration is checked,
//! training moves only the model's variables, a fine-tuned run is saved and
//! restored whole, and the feature-cache key tells boundary features apart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::{cpu_config, rel_err};
use furcate_core::config::LoadedConfig;
use furcate_core::extractor::efficientnet_lite0::{EfficientNetLite0, Lite0Net};
use furcate_core::extractor::frozen::{Backbone, BackboneConfig, Network};
use furcate_core::extractor::resnet50::{ResNet50, ResNet50Net};
use furcate_core::head::Targets;
use furcate_core::progress::Silent;
use furcate_core::run::{self, build_model, build_model_for, SavedRun, TrainOptions};
use furcate_core::train::{train, Batch, NoCheckpoints};
use furcate_core::{BuildContext, Error, ExtractorConfig, FeatureExtractor};
use tch::{nn, Device, Kind, Tensor};

/// Every variable of `vs` (optionally only those under `prefix`), copied.
fn snapshot(vs: &nn::VarStore, prefix: &str) -> HashMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

/// Writes the variables of a backbone to a safetensors weights file.
fn save_weights<N: Network>(net: &Backbone<N>, path: &Path) {
    let named: Vec<(String, Tensor)> =
        net.var_store().variables().into_iter().map(|(n, t)| (n, t.contiguous())).collect();
    Tensor::write_safetensors(&named, path).unwrap();
}

/// For `trainable_stages` = 1 and 2 (and channels-last or not): the extractor
/// returns `[N, output_dim]` boundary features, and its tail, started from the
/// same weights, maps them to the fully frozen extractor's pooled features.
/// `expected`: per N, variables the tail has and variables it must not have.
fn tail_reproduces_frozen_network<N: Network>(size: i64, expected: &[(usize, &[&str], &[&str])]) {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.safetensors");
    let full_cfg = BackboneConfig { channels_last: false, ..cpu_config(None, size) };
    save_weights(&Backbone::<N>::new(&full_cfg, &BuildContext::default()).unwrap(), &weights);
    let full_cfg = BackboneConfig { weights: Some(weights), ..full_cfg };
    let full = Backbone::<N>::new(&full_cfg, &BuildContext::default()).unwrap();
    let images = Tensor::rand([3, 1, size, size], (Kind::Float, Device::Cpu));
    let reference = full.extract(&images).unwrap();
    assert_eq!(reference.size(), [3, N::DIM]);

    for &(n, inside, outside) in expected {
        for channels_last in [false, true] {
            let cfg = BackboneConfig { trainable_stages: n, channels_last, ..full_cfg.clone() };
            let net = Backbone::<N>::new(&cfg, &BuildContext::default()).unwrap();
            assert_eq!(net.frozen_stages(), N::STAGES - n);
            let boundary = net.extract(&images).unwrap();
            let [c, h, w] = net.boundary_shape().unwrap();
            assert_eq!(net.output_dim(), c * h * w);
            assert_eq!(boundary.size(), [3, net.output_dim()], "N = {n}");
            assert_eq!(boundary.kind(), Kind::Float);

            let vs = nn::VarStore::new(Device::Cpu);
            let tail = net.trainable_tail(&(vs.root() / "backbone")).unwrap().expect("a tail");
            assert_eq!((tail.in_dim(), tail.out_dim()), (net.output_dim(), N::DIM));
            let names = vs.variables();
            for name in inside {
                assert!(names.contains_key(*name), "N = {n}: no {name}");
            }
            for name in outside {
                assert!(!names.contains_key(*name), "N = {n}: {name} should stay frozen");
            }
            assert!(vs.trainable_variables().iter().all(|t| t.requires_grad()));

            let ours = tch::no_grad(|| tail.forward_t(&boundary, false));
            let err = rel_err(&ours, &reference);
            let tolerance = if channels_last { 1e-4 } else { 1e-5 };
            eprintln!("{} N = {n}, channels_last = {channels_last}: relative error {err:e}", N::NAME);
            assert!(err <= tolerance, "{} N = {n}: relative error {err:e} > {tolerance:e}", N::NAME);
        }
    }
}

#[test]
fn resnet50_tail_reproduces_the_frozen_network() {
    tail_reproduces_frozen_network::<ResNet50Net>(
        64,
        &[
            (
                1,
                &["backbone.layer4.2.bn3.running_var"],
                &["backbone.layer3.5.conv3.weight", "backbone.conv1.weight"],
            ),
            (
                2,
                &["backbone.layer3.0.downsample.0.weight"],
                &["backbone.layer2.3.bn2.bias", "backbone.fc.weight"],
            ),
        ],
    );
}

#[test]
fn lite0_tail_reproduces_the_frozen_network() {
    tail_reproduces_frozen_network::<Lite0Net>(
        64,
        &[
            (
                1,
                &["backbone._blocks.15._project_conv.weight", "backbone._bn1.weight"],
                &["backbone._blocks.14._bn2.weight"],
            ),
            (
                2,
                &["backbone._blocks.11._expand_conv.weight", "backbone._conv_head.weight"],
                &["backbone._blocks.10._bn2.weight", "backbone._fc.weight", "backbone._conv_stem.weight"],
            ),
        ],
    );
}

/// Too many stages, fine-tuning inside `concat`, an unknown key, and
/// `standardise_features` with a tail are errors that name the setting.
#[test]
fn bad_settings_are_clear_errors() {
    let ctx = BuildContext::default();
    for (kind, max) in [("resnet50", 4), ("efficientnet_lite0", 7)] {
        let text = format!("type = \"{kind}\"\nsize = 32\ndevice = \"cpu\"\ntrainable_stages = {}", max + 1);
        let cfg: Box<dyn ExtractorConfig> = toml::from_str(&text).unwrap();
        assert_eq!(cfg.trainable_stages(), max + 1);
        let err = cfg.build(&ctx).err().expect("too many stages");
        let msg = err.to_string();
        assert!(matches!(err, Error::Invalid(_)), "{msg}");
        assert!(msg.contains("trainable_stages") && msg.contains(&format!("at most {max}")), "{msg}");
    }
    // The whole network but the stem is allowed.
    let cfg = BackboneConfig { trainable_stages: 4, ..cpu_config(None, 32) };
    assert_eq!(ResNet50::new(&cfg, &ctx).unwrap().boundary_shape(), Some([64, 8, 8]));

    let typo = toml::from_str::<Box<dyn ExtractorConfig>>("type = \"resnet50\"\ntrainable_stage = 1");
    assert!(typo.unwrap_err().to_string().contains("trainable_stage"));

    let concat: Box<dyn ExtractorConfig> = toml::from_str(
        "type = \"concat\"\nextractors = [{ type = \"two_point\", size = 32 }, \
         { type = \"efficientnet_lite0\", size = 32, trainable_stages = 1 }]",
    )
    .unwrap();
    let msg = concat.build(&ctx).err().expect("fine-tuning inside concat").to_string();
    assert!(msg.contains("extractors[1]") && msg.contains("trainable_stages"), "{msg}");

    let text = |standardise: bool| {
        format!(
            "[data]\nmanifest = \"m.csv\"\n[extractor]\ntype = \"efficientnet_lite0\"\nsize = 32\n\
             device = \"cpu\"\ntrainable_stages = 1\n[[heads]]\ntype = \"regression\"\nname = \"y\"\n\
             [training]\nstandardise_features = {standardise}\n"
        )
    };
    let msg = LoadedConfig::from_str(&text(true), Path::new("t.toml")).unwrap_err().to_string();
    assert!(msg.contains("standardise_features") && msg.contains("trainable_stages"), "{msg}");
    assert!(msg.contains("line 12"), "{msg}");
    // Set after loading, the model builder still refuses it; and a tail needs the extractor.
    let mut cfg = LoadedConfig::from_str(&text(false), Path::new("t.toml")).unwrap();
    let extractor = cfg.config.extractor.build(&ctx).unwrap();
    let states = vec![cfg.config.heads[0].fit(&[Some("1"), Some("2")]).unwrap()];
    let dim = extractor.output_dim();
    let msg = build_model(&cfg.config, &states, dim, Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("trainable_stages"), "{msg}");
    let wrong = build_model_for(&cfg.config, Some(extractor.as_ref()), &states, dim + 1, Device::Cpu);
    assert!(matches!(wrong.unwrap_err(), Error::Invalid(_)));
    cfg.config.training.standardise_features = Some(true);
    let err = build_model_for(&cfg.config, Some(extractor.as_ref()), &states, dim, Device::Cpu).unwrap_err();
    assert!(matches!(&err, Error::Invalid(m) if m.contains("standardise_features")), "{err}");
}

/// A few training steps move the tail's convolution and BatchNorm scale
/// variables, leave the tail's BatchNorm running statistics (eval mode) and
/// the extractor's frozen VarStore untouched.
#[test]
fn training_moves_the_tail_and_not_the_extractor() {
    let cfg = LoadedConfig::from_str(
        "[data]\nmanifest = \"m.csv\"\n[extractor]\ntype = \"resnet50\"\nsize = 32\ntrainable_stages = 1\n\
         [trunk]\nhidden = [8]\n[[heads]]\ntype = \"classification\"\nname = \"kind\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let extractor = ResNet50::new(
        &BackboneConfig { trainable_stages: 1, ..cpu_config(None, 32) },
        &BuildContext::default(),
    )
    .unwrap();
    let frozen_before = snapshot(extractor.var_store(), "");
    let images = Tensor::rand([8, 1, 32, 32], (Kind::Float, Device::Cpu));
    let features = extractor.extract(&images).unwrap();
    let labels: Vec<Option<&str>> = (0..8).map(|i| Some(if i % 2 == 0 { "a" } else { "b" })).collect();
    let states = vec![cfg.config.heads[0].fit(&labels).unwrap()];
    let (vs, model, _) =
        build_model_for(&cfg.config, Some(&extractor), &states, features.size()[1], Device::Cpu).unwrap();
    assert!(model.tail().is_some());
    assert_eq!(model.in_dim(), extractor.output_dim());
    let tail_before = snapshot(&vs, "backbone.");
    assert!(tail_before.contains_key("backbone.layer4.0.conv1.weight"));
    let targets: Vec<Targets> = model.heads().iter().map(|h| h.encode(&labels).unwrap()).collect();
    let data = Batch { features, targets };
    let mut t = cfg.config.training.clone();
    t.epochs = 2;
    t.batch_size = 4;
    train(&model, &vs, &data, None, &t, &mut NoCheckpoints, &mut Silent).unwrap();

    let after = snapshot(&vs, "backbone.");
    for (name, before) in &tail_before {
        let moved = !before.equal(&after[name]);
        let statistic = name.ends_with("running_mean") || name.ends_with("running_var");
        assert_eq!(moved, !statistic, "{name}: moved = {moved}");
    }
    for (name, var) in extractor.var_store().variables() {
        assert!(frozen_before[&name].equal(&var), "the extractor's {name} changed");
        assert!(!var.requires_grad(), "{name}");
    }
}

/// Writes 16 small grayscale PNGs (stripes or noise) and their manifest.
fn write_dataset(dir: &Path) -> Vec<String> {
    let images = dir.join("data");
    std::fs::create_dir_all(&images).unwrap();
    let mut manifest = String::from("file,kind,amount\n");
    let mut names = Vec::new();
    for i in 0..16u32 {
        let stripes = i % 2 == 0;
        let img = image::GrayImage::from_fn(48, 48, |x, y| {
            let hash = (x * 7919 + y * 104_729 + i * 15_485_863).wrapping_mul(2_654_435_761) >> 24;
            let v = if stripes { ((x + i) / 3 % 2) * 200 + hash % 40 } else { hash };
            image::Luma([v.min(255) as u8])
        });
        let name = format!("img{i:02}.png");
        img.save(images.join(&name)).unwrap();
        manifest += &format!("{name},{},{}\n", if stripes { "stripes" } else { "noise" }, i as f64 / 16.0);
        names.push(name);
    }
    std::fs::write(images.join("manifest.csv"), manifest).unwrap();
    names
}

fn run_config(dir: &Path, trainable_stages: usize) -> LoadedConfig {
    let text = format!(
        r#"[data]
manifest = "data/manifest.csv"
feature_cache = "features"

[extractor]
type = "efficientnet_lite0"
weights = "weights.safetensors"
size = 64
device = "cpu"
trainable_stages = {trainable_stages}

[[heads]]
type = "classification"
name = "kind"

[[heads]]
type = "regression"
name = "amount"

[training]
epochs = 4
batch_size = 4
learning_rate = 0.01
test_fraction = 0.25
validation_fraction = 0.2
seed = 5
checkpoint_every = 2
"#
    );
    let path = dir.join(format!("run{trainable_stages}.toml"));
    std::fs::write(&path, &text).unwrap();
    LoadedConfig::from_file(&path).unwrap()
}

/// The rows of a predictions CSV, as column -> cells.
fn read_csv(text: &str) -> HashMap<String, Vec<String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let mut columns: HashMap<String, Vec<String>> = headers.iter().map(|h| (h.clone(), Vec::new())).collect();
    for record in reader.records() {
        for (h, cell) in headers.iter().zip(record.unwrap().iter()) {
            columns.get_mut(h).unwrap().push(cell.to_string());
        }
    }
    columns
}

/// `trainable_stages = 1` end to end: train_run fine-tunes the tail and saves
/// it; the reopened run has the fine-tuned values (not the pretrained ones)
/// and scores and predicts exactly as the in-memory model did; the cache
/// keeps boundary features apart from pooled ones.
#[test]
fn a_fine_tuned_run_is_saved_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let names = write_dataset(dir.path());
    let weights = dir.path().join("weights.safetensors");
    let pretrained = EfficientNetLite0::new(&cpu_config(None, 64), &BuildContext::default()).unwrap();
    save_weights(&pretrained, &weights);

    let cfg = run_config(dir.path(), 1);
    let out = dir.path().join("run");
    let opts = TrainOptions { out: out.clone(), resume: false, force: false, report: false, wait: false };
    let summary = run::train_run(&cfg, &opts, &mut Silent).unwrap();
    assert_eq!(summary.cache.extracted, 16);

    let saved = SavedRun::open(&out).unwrap();
    let tail = saved.model.tail().expect("the reopened model has its tail");
    assert_eq!(saved.state.in_dim, tail.in_dim());
    let vars = saved.vs.variables();
    let name = "_blocks.15._project_conv.weight";
    let pretrained_vars = pretrained.var_store().variables();
    assert!(!vars[&format!("backbone.{name}")].equal(&pretrained_vars[name]), "the tail was not fine-tuned");
    let on_disk =
        furcate_core::run::checkpoint::load_tensors(&out.join("checkpoint/model.safetensors")).unwrap();
    for (name, var) in &vars {
        assert!(on_disk[name].equal(var), "{name} was not restored");
    }

    // The reopened run scores its test part as the in-memory model did.
    let again = saved.evaluate(None, &mut Silent).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&summary.evaluation).unwrap());
    // ... and predicts the test images as predictions.csv (the in-memory model) says.
    let written = read_csv(&std::fs::read_to_string(out.join("predictions.csv")).unwrap());
    let files: Vec<PathBuf> = written["file"].iter().map(|f| dir.path().join("data").join(f)).collect();
    assert_eq!(files.len(), summary.evaluation.n);
    let predicted = read_csv(&saved.predict(&files, &mut Silent).unwrap());
    let mut compared = 0;
    for (column, cells) in &predicted {
        if column != "file" && column != "split" {
            assert_eq!(cells, &written[column], "{column}");
            compared += 1;
        }
    }
    assert!(compared >= 2, "{:?}", predicted.keys());

    // Boundary features and pooled ones have different cache keys; the
    // frozen extractor's table (and so its key) has no trainable_stages.
    let frozen_cfg = run_config(dir.path(), 0);
    let json = serde_json::to_string(&frozen_cfg.config.extractor).unwrap();
    assert!(!json.contains("trainable_stages"), "{json}");
    assert!(serde_json::to_string(&cfg.config.extractor).unwrap().contains("\"trainable_stages\":1"));
    let set = furcate_core::data::Dataset::load(&cfg.config.data, &cfg.dir()).unwrap();
    assert_eq!(set.names, names);
    let frozen = frozen_cfg.config.extractor.build(&frozen_cfg.build_context()).unwrap();
    let run::Features { features: pooled, stats, .. } =
        run::features_for(&frozen_cfg, frozen.as_ref(), &set, &mut Silent).unwrap();
    assert_eq!((stats.hits, stats.extracted), (0, 16));
    assert_eq!(pooled.size(), [16, 1280]);
    let cut = cfg.config.extractor.build(&cfg.build_context()).unwrap();
    let run::Features { features: boundary, stats, .. } =
        run::features_for(&cfg, cut.as_ref(), &set, &mut Silent).unwrap();
    assert_eq!((stats.hits, stats.extracted), (16, 0));
    assert_eq!(boundary.size(), [16, cut.output_dim()]);
    assert_ne!(cut.output_dim(), 1280);
}
