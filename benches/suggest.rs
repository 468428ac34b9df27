//! `furcate suggest`'s ranking of a pool of 10,000 cached images: per image
//! two class heads' probabilities (7 and 10 classes), distances in the
//! heads' standardised features to 3150 labelled images (the thesis's
//! training part) and to the picks so far. Widths: 176 (the default
//! config's heads: stage2-4 for morphology, the stem for the fraction
//! class) and 1280 (every feature of EfficientNet-Lite0's last layer). The
//! target: the whole `suggest` on 10,000 cached images under 10 s.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use furcate_core::progress::Silent;
use furcate_core::suggest::uncertainty::{HeadSignal, Signal};
use furcate_core::suggest::{rank, Candidates, Strategy};
use tch::{Device, Kind, Tensor};

const POOL: i64 = 10_000;
const LABELLED: i64 = 3150;

/// `n` rows of `k` random class probabilities.
fn probabilities(n: i64, k: i64) -> Vec<Vec<f64>> {
    let p = Tensor::rand([n, k], (Kind::Double, Device::Cpu)).softmax(1, Kind::Double);
    let flat = Vec::<f64>::try_from(p.reshape([-1])).expect("doubles");
    flat.chunks(k as usize).map(<[f64]>::to_vec).collect()
}

fn head(name: &str, k: i64) -> HeadSignal {
    HeadSignal {
        name: name.into(),
        signal: Some(Signal::Probabilities {
            classes: (0..k).map(|c| format!("c{c}")).collect(),
            rows: probabilities(POOL, k),
        }),
    }
}

fn bench_rank(c: &mut Criterion) {
    tch::manual_seed(0);
    let heads = [head("morphology", 7), head("volume_fraction_class", 10)];
    let mut group = c.benchmark_group("suggest");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(POOL as u64));
    for dim in [176, 1280] {
        let pool = Tensor::randn([POOL, dim], (Kind::Float, Device::Cpu));
        let labelled = Tensor::randn([LABELLED, dim], (Kind::Float, Device::Cpu));
        let candidates = Candidates { features: &pool, labelled: Some(&labelled), heads: &heads };
        for (strategy, k) in [(Strategy::Diverse, 20), (Strategy::Diverse, 100), (Strategy::Margin, 100)] {
            let id = BenchmarkId::new(format!("{strategy}_k{k}_3150_labelled"), format!("10000x{dim}"));
            group.bench_function(id, |b| {
                b.iter(|| rank(strategy, &candidates, k, 0, &mut Silent).expect("ranks"));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_rank);
criterion_main!(benches);
