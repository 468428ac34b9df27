//! The synthetic data set: the default 3500 images in memory, and written to
//! disk (PNGs, manifest, config, fsynced and renamed into place).
//!
//! Targets (issue 3), on the 2-core development machine: >= 10,000 images/s
//! in memory, and the whole set to disk in under 2 s.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use furcate_synth::{generate, write_dataset, SynthConfig};

fn synth(c: &mut Criterion) {
    let cfg = SynthConfig::default();
    let images = cfg.image_count() as u64;
    let mut group = c.benchmark_group("synth");
    group.throughput(Throughput::Elements(images));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("default_set_in_memory", |b| {
        b.iter(|| {
            let images = generate(&cfg).expect("the default config is valid");
            assert_eq!(images.len(), 3500);
            images
        })
    });

    // Each run writes a fresh folder. They are all deleted at the end, not
    // in between: deleting thousands of files keeps the file system's
    // journal busy for seconds, which would be charged to the next run.
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let mut runs = 0;
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("default_set_to_disk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let out = tmp.path().join(format!("set{runs}"));
                runs += 1;
                let start = Instant::now();
                write_dataset(&cfg, &out, false).expect("writing the data set");
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    remove_sets(tmp.path());
}

/// Deletes the written sets with a few threads (one unlink after the other
/// takes minutes for tens of thousands of files on a busy journal).
fn remove_sets(dir: &Path) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|set| std::fs::read_dir(set.path().join("images")).into_iter().flatten().flatten())
        .map(|f| f.path())
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                while let Some(f) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let _ = std::fs::remove_file(f);
                }
            });
        }
    });
}

criterion_group!(benches, synth);
criterion_main!(benches);
