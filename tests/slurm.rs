//! Many machines: `--shard`, `predict --merge`, `furcate cache`, and
//! `furcate slurm` job arrays on a real Slurm (`scripts/slurm-local.sh start`
//! brings up a one-node cluster; `scripts/test.sh` does so when it can).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use furcate_core::features::{cache_info, load_features, CacheInfo};

use crate::common::skip_rule::skip_unless_ci;
use crate::common::*;

/// A config of the LITE0_32 extractor and a morphology head over `manifest`,
/// its features cached in `dir/features`.
fn config(dir: &Path, manifest: &Path) -> PathBuf {
    let text = config_text(manifest, LITE0_32, &head("classification", "morphology"), "epochs = 5\n");
    write_config(dir, "cfg.toml", &text)
}

/// Runs `furcate --quiet ARGS` in `dir`; panics with its output unless it succeeds.
fn run_in(dir: &Path, args: &[&str]) -> String {
    let o = furcate().arg("--quiet").args(args).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "furcate {args:?} failed: {}", text(&o));
    text(&o)
}

/// Whether a Slurm cluster answers (`sinfo`); otherwise skips, which fails under CI.
fn slurm_up() -> bool {
    match Command::new("sinfo").arg("-h").output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip_unless_ci(
                &format!("no Slurm cluster answers sinfo: {}", String::from_utf8_lossy(&o.stderr).trim()),
                "`eval \"$(scripts/slurm-local.sh start)\"`",
            );
            false
        }
        Err(e) => {
            skip_unless_ci(&format!("sinfo cannot run ({e})"), "`eval \"$(scripts/slurm-local.sh start)\"`");
            false
        }
    }
}

/// The one extractor folder of the cache `dir/features`.
fn cache(dir: &Path) -> CacheInfo {
    let info = cache_info(&dir.join("features")).unwrap();
    assert_eq!(info.folders.len(), 1, "one extractor config: {info:?}");
    info
}

/// Every segment of the cache loads (no torn or corrupt entry).
fn assert_segments_whole(info: &CacheInfo) {
    let folder = &info.folders[0];
    assert!(folder.unreadable.is_empty(), "unreadable segments: {:?}", folder.unreadable);
    for entry in std::fs::read_dir(info.dir.join(&folder.key)).unwrap().flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if p.extension().is_some_and(|e| e == "safetensors") && !name.starts_with('.') {
            load_features(&p).unwrap_or_else(|e| panic!("torn segment {}: {e}", p.display()));
        }
    }
}

/// `sbatch --wait ARGS SCRIPT`, which must succeed.
fn sbatch_wait(args: &[&str], script: &Path) {
    let o = Command::new("sbatch").arg("--wait").args(args).arg(script).output().unwrap();
    assert!(o.status.success(), "sbatch {args:?} {}: {}", script.display(), text(&o));
}

#[test]
fn shard_and_merge_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &dataset(dir.path(), 1, 1));
    let c = s(&cfg);
    for (args, expect) in [
        (vec!["extract", c, "--shard", "2/2"], "--shard 2/2: shard index 2 is out of range 0..2"),
        (vec!["extract", c, "--shard", "0/0"], "--shard 0/0: the number of shards must be at least 1"),
        (vec!["extract", c, "--shard", "half"], "--shard half: expected I/N"),
        (vec!["slurm", c, "--shards", "0"], "--shards: the number of shards must be at least 1"),
    ] {
        let o = furcate().args(&args).env_remove("SLURM_ARRAY_TASK_ID").output().unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(text(&o).contains(expect), "{args:?}: {}", text(&o));
    }
    // `slurm` outside an array task, and an array that is not 0-(N-1).
    let o = furcate()
        .args(["extract", c, "--shard", "slurm"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(text(&o).contains("--shard slurm: SLURM_ARRAY_TASK_ID is not set"), "{}", text(&o));
    let o = furcate()
        .args(["extract", c, "--shard", "slurm"])
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_COUNT", "1")
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("SLURM_ARRAY_TASK_ID=3"), "{}", text(&o));
    // A merge that lacks a part names the missing index; a foreign file is refused.
    let part = |i: usize| dir.path().join(format!("p.part-{i}-of-3.csv"));
    for i in [0, 2] {
        std::fs::write(part(i), "file,x\na,1\n").unwrap();
    }
    let o = run(&["predict", "--merge", s(&part(2)), s(&part(0)), "--out", s(&dir.path().join("p.csv"))]);
    assert!(text(&o).contains("the parts of shard(s) 1 of 3 are missing"), "{}", text(&o));
    let o = run(&["predict", "--merge", s(&cfg)]);
    assert!(text(&o).contains("not a part file"), "{}", text(&o));
}

/// Shards run as plain processes fill one cache: each image extracted
/// once, a later unsharded run reads all of them, and its features equal
/// those of a run without shards bit for bit; `cache merge` folds the
/// segments into one without changing what the cache holds.
#[test]
fn shards_fill_one_cache_that_equals_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path(), 2, 2);
    let cfg = config(dir.path(), &manifest);
    let reference = tempfile::tempdir().unwrap();
    let ref_cfg = config(reference.path(), &manifest);
    run_in(reference.path(), &["extract", s(&ref_cfg), "--out", "ref.safetensors"]);
    let mut extracted = 0;
    for i in 0..3 {
        let out = run_in(dir.path(), &["extract", s(&cfg), "--shard", &format!("{i}/3")]);
        let n: usize =
            out.split("from the cache, ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        extracted += n;
    }
    assert_eq!(extracted, 8, "every image extracted once");
    let info = cache(dir.path());
    assert_eq!((info.folders[0].entries, info.folders[0].rows, info.folders[0].segments), (8, 8, 3));
    let out = run_in(dir.path(), &["extract", s(&cfg), "--out", "all.safetensors"]);
    assert!(out.contains("8 rows from the cache, 0 extracted"), "{out}");
    assert_same_features(&dir.path().join("all.safetensors"), &reference.path().join("ref.safetensors"));
    let out = run_in(dir.path(), &["cache", "merge", s(&dir.path().join("features"))]);
    assert!(out.contains("3 segments folded into one"), "{out}");
    let info = cache(dir.path());
    assert_eq!((info.folders[0].entries, info.folders[0].segments), (8, 1));
    let out = run_in(dir.path(), &["extract", s(&cfg), "--out", "again.safetensors"]);
    assert!(out.contains("8 rows from the cache, 0 extracted"), "{out}");
    assert_same_features(&dir.path().join("again.safetensors"), &reference.path().join("ref.safetensors"));
}

/// The same names and bit-identical features.
fn assert_same_features(a: &Path, b: &Path) {
    let (a, b) = (load_features(a).unwrap(), load_features(b).unwrap());
    assert_eq!(a.names, b.names);
    let bits =
        |f: &tch::Tensor| Vec::<f32>::try_from(f.view([-1])).unwrap().iter().map(|v| v.to_bits()).collect();
    let (x, y): (Vec<u32>, Vec<u32>) = (bits(&a.features), bits(&b.features));
    assert_eq!(x, y, "features differ");
}

/// The test: an extraction array of 4 shards under `sbatch --wait`
/// fills the cache with every image once, its features equal an unsharded
/// run's bit for bit, and the finishing job trains; then a prediction array
/// whose merged CSV equals a single-process `furcate predict`.
#[test]
fn slurm_arrays_equal_one_process() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = dataset(d, 2, 3);
    let cfg = config(d, &manifest);
    let reference = tempfile::tempdir().unwrap();
    let ref_cfg = config(reference.path(), &manifest);
    run_in(reference.path(), &["extract", s(&ref_cfg), "--out", "ref.safetensors"]);

    let out =
        run_in(d, &["slurm", s(&cfg), "--shards", "4", "--train", "--submit", "--wait", "--dir", "jobs"]);
    assert!(out.contains("submitted array job"), "{out}");
    let logs =
        std::fs::read_dir(d.join("jobs/logs")).unwrap().flatten().map(|e| e.path()).collect::<Vec<_>>();
    let log = |pat: &str| {
        logs.iter()
            .filter(|p| p.to_string_lossy().contains(pat))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>()
    };
    let tasks = log("furcate-extract-");
    for i in 0..4 {
        assert!(tasks.contains(&format!("shard {i}/4: images")), "task {i} did not run: {tasks}");
    }
    assert!(log("finish").contains("12 rows from the cache, 0 extracted"), "{}", log("finish"));
    let info = cache(d);
    assert_eq!((info.folders[0].entries, info.folders[0].rows, info.folders[0].segments), (12, 12, 4));
    assert_segments_whole(&info);
    assert_same_features(&d.join("features.safetensors"), &reference.path().join("ref.safetensors"));
    let run_dir = d.join("runs/cfg");
    assert!(run_dir.join("checkpoint/state.json").is_file(), "the finishing job trained: {}", log("finish"));

    let images = "data/images";
    run_in(
        d,
        &[
            "slurm",
            "runs/cfg",
            images,
            "--shards",
            "4",
            "--out",
            "preds.csv",
            "--submit",
            "--wait",
            "--dir",
            "jobs",
        ],
    );
    run_in(d, &["predict", "runs/cfg", images, "--out", "single.csv"]);
    for i in 0..4 {
        assert!(d.join(format!("preds.part-{i}-of-4.csv")).is_file(), "part {i}");
    }
    let merged = std::fs::read_to_string(d.join("preds.csv")).unwrap();
    assert_eq!(merged, std::fs::read_to_string(d.join("single.csv")).unwrap());
    assert_eq!(merged.lines().count(), 13, "a header and 12 images");
}

/// A shard killed while it extracts leaves no torn cache entry (only a
/// hidden temporary file no reader takes for a segment), and submitting
/// that one array index again completes the set.
#[test]
fn killed_shard_leaves_no_torn_entry_and_its_index_completes_the_set() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = config(d, &dataset(d, 2, 3));
    run_in(d, &["slurm", s(&cfg), "--shards", "2", "--dir", "jobs"]);
    let array = d.join("jobs/extract.array.sh");
    sbatch_wait(&["--array=0"], &array);
    let before = cache(d).folders[0].clone();
    assert_eq!(before.entries, 6);

    // Shard 1 as the array would run it, killed as soon as it writes (or at 60 s).
    let mut child =
        furcate().args(["--quiet", "extract", s(&cfg), "--shard", "1/2"]).current_dir(d).spawn().unwrap();
    let folder = d.join("features").join(&before.key);
    let start = Instant::now();
    let mut caught_writing = false;
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        let writing = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if writing {
            caught_writing = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    eprintln!("shard 1 {status}; caught while writing a segment: {caught_writing}");
    let info = cache(d);
    assert_segments_whole(&info);
    // All or nothing: shard 1's 6 rows are in one segment (the kill may land after its rename).
    assert!([6, 12].contains(&info.folders[0].entries), "a torn shard: {info:?}");
    // Only the failed index again: the set is complete and read from the cache.
    sbatch_wait(&["--array=1"], &array);
    let info = cache(d);
    assert_segments_whole(&info);
    assert_eq!(info.folders[0].entries, 12);
    let out = run_in(d, &["extract", s(&cfg), "--out", "all.safetensors"]);
    assert!(out.contains("12 rows from the cache, 0 extracted"), "{out}");
}
