//! Training speed: one epoch, and the default model's 1024 epochs, of the
//! three default heads (morphology and volume-fraction class as
//! classification, exact volume fraction as regression) on a shared 100-unit
//! layer, full batch over 3150 cached rows of 1280 features (EfficientNet-Lite0's
//! width). The peer is the same loop in PyTorch, `benches/torch_train.py`
//! (run it with the set-up's Python): on an idle 2-core machine it took
//! 23.3-24.2 s for 1024 epochs, this bench 22.5 s (one epoch: 22.9 ms).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use furcate_core::config::{LoadedConfig, TrainingConfig};
use furcate_core::model::MultiHeadModel;
use furcate_core::progress::Silent;
use furcate_core::run::build_model;
use furcate_core::train::{train, Batch, NoCheckpoints};
use tch::{Device, Kind, Tensor};

const ROWS: i64 = 3150;
const DIM: i64 = 1280;

const CONFIG: &str = r#"
[data]
manifest = "unused.csv"
[extractor]
type = "efficientnet_lite0"
[trunk]
hidden = [100]
[[heads]]
type = "classification"
name = "morphology"
[[heads]]
type = "classification"
name = "volume_fraction_class"
[[heads]]
type = "regression"
name = "volume_fraction"
"#;

fn setup(epochs: usize) -> (TrainingConfig, Batch, tch::nn::VarStore, MultiHeadModel) {
    let cfg =
        LoadedConfig::from_str(CONFIG, std::path::Path::new("bench.toml")).expect("the bench config parses");
    tch::manual_seed(0);
    let morph: Vec<String> = (0..ROWS).map(|i| format!("m{}", i % 7)).collect();
    let vf: Vec<String> = (0..ROWS).map(|i| format!("{}", (i / 7) % 10)).collect();
    let value: Vec<String> = (0..ROWS).map(|i| format!("{}", ((i / 7) % 10) as f64 * 0.05 + 0.05)).collect();
    let columns = [morph, vf, value];
    let states: Vec<_> = cfg
        .config
        .heads
        .iter()
        .zip(&columns)
        .map(|(h, col)| {
            let labels: Vec<Option<&str>> = col.iter().map(|s| Some(s.as_str())).collect();
            h.fit(&labels).expect("fit")
        })
        .collect();
    let (vs, model, _) = build_model(&cfg.config, &states, DIM, Device::Cpu).expect("model");
    let targets = model
        .heads()
        .iter()
        .zip(&columns)
        .map(|(h, col)| {
            let labels: Vec<Option<&str>> = col.iter().map(|s| Some(s.as_str())).collect();
            h.encode(&labels).expect("encode")
        })
        .collect();
    let features = Tensor::rand([ROWS, DIM], (Kind::Float, Device::Cpu)) * 6.0;
    let mut training = cfg.config.training.clone();
    training.epochs = epochs;
    training.checkpoint_every = 0;
    (training, Batch { features, targets }, vs, model)
}

fn bench_train(c: &mut Criterion) {
    let mut group = c.benchmark_group("train");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(ROWS as u64));
    let (cfg, batch, vs, model) = setup(1);
    group.bench_function("one_epoch_3_heads_trunk100_3150x1280", |b| {
        b.iter(|| train(&model, &vs, &batch, None, &cfg, &mut NoCheckpoints, &mut Silent).expect("train"))
    });
    group.finish();

    let mut group = c.benchmark_group("train_1024_epochs");
    group.sample_size(10).measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(1024));
    let (cfg, batch, vs, model) = setup(1024);
    group.bench_function("1024_epochs_3_heads_trunk100_3150x1280", |b| {
        b.iter(|| train(&model, &vs, &batch, None, &cfg, &mut NoCheckpoints, &mut Silent).expect("train"))
    });
    group.finish();
}

criterion_group!(benches, bench_train);
criterion_main!(benches);
