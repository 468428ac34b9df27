//! Forward pass of the frozen extractors, in images per second.
//!
//! ResNet50 and EfficientNet-Lite0 at batch 1, 8 and 32, sides 128 and 224,
//! f32 on the CPU, channels-last (and NCHW at 128, batch 32, for comparison); on CUDA as well when libtorch sees a device (f32, and
//! ResNet50 at 224 with batch 256 in bf16), with a device synchronise before
//! the clock stops. The weights are random: speed does not depend on them.
//!
//! `tiles/cpu`: a 2048 x 1536 16-bit (12-bit data) micrograph cut into 48
//! tiles of 256 px (`[data] tile`), each resized to 128 px: decoding and
//! tiling alone, and with EfficientNet-Lite0's forward pass, per tile.
//!
//! ```sh
//! cargo bench --bench extract                 # everything
//! cargo bench --bench extract -- resnet50/cpu # one group
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use furcate_core::extractor::efficientnet_lite0::EfficientNetLite0;
use furcate_core::extractor::frozen::{BackboneConfig, Precision};
use furcate_core::extractor::resnet50::ResNet50;
use furcate_core::runtime::DeviceSpec;
use furcate_core::{BuildContext, FeatureExtractor};
use tch::{Device, Kind, Tensor};

const BATCHES: [i64; 3] = [1, 8, 32];
const SIZES: [i64; 2] = [128, 224];

fn build(net: &str, cfg: &BackboneConfig) -> Box<dyn FeatureExtractor> {
    let ctx = BuildContext::default();
    match net {
        "resnet50" => Box::new(ResNet50::new(cfg, &ctx).expect("resnet50 builds")),
        _ => Box::new(EfficientNetLite0::new(cfg, &ctx).expect("efficientnet_lite0 builds")),
    }
}

/// Times `iters` forward passes of `images` (already on `device`), synchronising CUDA before the clock stops.
fn time_forward(net: &dyn FeatureExtractor, images: &Tensor, device: Device, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let _features = black_box(net.extract(images).expect("extract"));
    }
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    start.elapsed()
}

/// One case: network (empty: both), side, batch, precision, channels-last.
type Case = (&'static str, i64, i64, Precision, bool);

fn bench_device(c: &mut Criterion, spec: DeviceSpec, cases: &[Case]) {
    let device = spec.resolve().expect("device");
    for net_name in ["resnet50", "efficientnet_lite0"] {
        let mut group = c.benchmark_group(format!("{net_name}/{spec}"));
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        for &(only, size, batch, precision, channels_last) in cases {
            if !only.is_empty() && only != net_name {
                continue;
            }
            let cfg = BackboneConfig { size, device: spec, precision, channels_last, ..Default::default() };
            let net = build(net_name, &cfg);
            let images = Tensor::rand([batch, 3, size, size], (Kind::Float, device));
            group.throughput(Throughput::Elements(batch as u64));
            let layout = if channels_last { "nhwc" } else { "nchw" };
            let id = BenchmarkId::new(format!("{size}px/{precision:?}/{layout}"), batch);
            group.bench_with_input(id, &images, |b, images| {
                b.iter_custom(|iters| time_forward(net.as_ref(), images, device, iters))
            });
        }
        group.finish();
    }
}

fn extractors(c: &mut Criterion) {
    eprintln!("libtorch intra-op threads: {}", tch::get_num_threads());
    let grid: Vec<Case> =
        SIZES.iter().flat_map(|&s| BATCHES.iter().map(move |&b| ("", s, b, Precision::F32, true))).collect();
    // The default layout is channels-last; this case measures the other one.
    let mut cpu = grid.clone();
    cpu.push(("", 128, 32, Precision::F32, false));
    bench_device(c, DeviceSpec::Cpu, &cpu);
    if tch::Cuda::is_available() {
        let mut gpu = grid.clone();
        gpu.push(("resnet50", 224, 256, Precision::Bf16, true));
        bench_device(c, DeviceSpec::Cuda(0), &gpu);
    }
}

/// The cost of taps: EfficientNet-Lite0 and ResNet50 at 128 px, batch 32, on
/// the CPU, untapped (today's features) against every tap pooled in the same
/// pass (target: at most 10 % more), and against the early taps only (the
/// pass stops after the deepest tap asked for).
fn taps(c: &mut Criterion) {
    let all_lite0 = ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head"];
    let all_resnet = ["stem", "layer1", "layer2", "layer3", "layer4"];
    let cases: [(&str, &str, Option<Vec<&str>>); 6] = [
        ("efficientnet_lite0", "untapped", None),
        ("efficientnet_lite0", "all_taps", Some(all_lite0.to_vec())),
        ("efficientnet_lite0", "stem_to_stage3", Some(all_lite0[..4].to_vec())),
        ("resnet50", "untapped", None),
        ("resnet50", "all_taps", Some(all_resnet.to_vec())),
        ("resnet50", "stem_to_layer2", Some(all_resnet[..3].to_vec())),
    ];
    let mut group = c.benchmark_group("taps/cpu");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let batch = 32;
    let images = Tensor::rand([batch, 3, 128, 128], (Kind::Float, Device::Cpu));
    group.throughput(Throughput::Elements(batch as u64));
    for (net_name, label, taps) in cases {
        let cfg = BackboneConfig {
            size: 128,
            device: DeviceSpec::Cpu,
            taps: taps.map(|t| t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let net = build(net_name, &cfg);
        group.bench_with_input(BenchmarkId::new(net_name, label), &images, |b, images| {
            b.iter_custom(|iters| time_forward(net.as_ref(), images, Device::Cpu, iters))
        });
    }
    group.finish();
}

/// Real micrographs: decode + crop + intensity + tile one 2048 x 1536 16-bit
/// image (48 tiles of 256 px, resized to 128), then Lite0 on the tiles.
fn tiles(c: &mut Criterion) {
    use furcate_core::config::DataConfig;
    use furcate_core::data::prepare::Preprocess;
    use furcate_core::data::{image::stack, Dataset};

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sem.tif");
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(2048, 1536, |x, y| {
        let v = ((x as f64 / 9.0).sin() * (y as f64 / 13.0).cos() * 0.5 + 0.5) * 4095.0;
        image::Luma([v as u16])
    })
    .save(&path)
    .expect("write the TIFF");
    let data = Dataset::from_paths(&[path]).expect("dataset");
    let cfg: DataConfig = toml::from_str("manifest = \"m.csv\"\ntile = { size = 256 }").expect("config");
    let pre = Preprocess { data: &cfg, size: 128 };
    let plan = pre.plan(&data).expect("plan");
    let rows: Vec<usize> = (0..plan.names.len()).collect();
    let net = build("efficientnet_lite0", &BackboneConfig { size: 128, ..Default::default() });
    let mut group = c.benchmark_group("tiles/cpu");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("decode_tile_2048x1536_16bit", |b| {
        b.iter(|| black_box(pre.load_rows(&data, &plan, &rows).expect("tiles")))
    });
    group.bench_function("decode_tile_extract_lite0_128px", |b| {
        b.iter(|| {
            let images = stack(&pre.load_rows(&data, &plan, &rows).expect("tiles"), 128);
            black_box(net.extract_all(&images, &mut |_| {}).expect("extract"))
        })
    });
    group.finish();
}

criterion_group!(benches, extractors, taps, tiles);
criterion_main!(benches);
