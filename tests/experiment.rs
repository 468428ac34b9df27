//! `furcate experiment` end to end on a tiny synthetic set: two points, their
//! run folders, results.csv/results.md/plots, cached features reused, and a
//! resumed sweep that reads finished points back instead of retraining.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{dataset as make_dataset, furcate, text};

fn run(args: &[&str]) -> Output {
    furcate().args(args).output().expect("the binary runs")
}

/// 2 morphologies x 2 volume fractions x 5 images.
fn dataset(dir: &Path) -> PathBuf {
    make_dataset(dir, 2, 5)
}

#[test]
fn two_point_sweep_writes_tables_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let base = format!(
        r#"[data]
manifest = "{}"
feature_cache = "features"

[extractor]
type = "efficientnet_lite0"
weights = "cache:efficientnet_lite0.safetensors"
size = 32

[[heads]]
type = "classification"
name = "volume_fraction_class"

[[heads]]
type = "regression"
name = "volume_fraction"

[training]
epochs = 5
"#,
        manifest.display()
    );
    std::fs::write(dir.path().join("base.toml"), base).unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        r#"base = "base.toml"
out = "sweep"

[overrides]
training = { epochs = 8, validation_fraction = 0.25, patience = 4 }
consistency = [{ value = "volume_fraction", class = "volume_fraction_class" }]

[sweep]
test_fractions = [0.25, 0.5]
seeds = [7]
trunks = [[]]
"#,
    )
    .unwrap();
    let exp_s = exp.to_str().unwrap();
    let o = run(&["--quiet", "experiment", exp_s]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let sweep = dir.path().join("sweep");
    let names = [
        "efficientnet_lite0_volume_fraction_class+volume_fraction_trunk-none_test0.25_seed7",
        "efficientnet_lite0_volume_fraction_class+volume_fraction_trunk-none_test0.50_seed7",
    ];
    for n in names {
        assert!(sweep.join(n).join("metrics.json").is_file(), "missing run folder {n}: {out}");
        let cfg = std::fs::read_to_string(sweep.join(n).join("config.toml")).unwrap();
        assert!(cfg.contains("epochs = 8") && cfg.contains("seed = 7"), "overrides not applied: {cfg}");
    }
    // Features are extracted by the first point only; the second reads the cache.
    assert!(out.contains("20 extracted, 0 from cache"), "{out}");
    assert!(out.contains("0 extracted, 20 from cache"), "{out}");

    let csv = std::fs::read_to_string(sweep.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in
        ["volume_fraction_class_error_rate", "volume_fraction_mae", "volume_fraction_rounded_error_rate"]
    {
        assert!(header.contains(&col), "{col} not in {header:?}");
    }
    let row: Vec<&str> = lines[1].split(',').collect();
    let at = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(at("train_fraction"), "0.75");
    let mae: f64 = at("volume_fraction_mae").parse().unwrap();
    assert!(mae.is_finite() && mae >= 0.0);
    let rounded: f64 = at("volume_fraction_rounded_error_rate").parse().unwrap();
    assert!((0.0..=1.0).contains(&rounded));
    assert!(at("best_epoch").parse::<usize>().unwrap() <= 8);

    let md = std::fs::read_to_string(sweep.join("results.md")).unwrap();
    assert!(md.contains("| 0.25-0.75 |") && md.contains("| 0.5-0.5 |"), "{md}");
    assert!(md.contains("volume_fraction rounded to class: error"), "{md}");
    assert!(out.contains(&md), "the command prints results.md");
    for head in ["volume_fraction_class", "volume_fraction"] {
        let png = std::fs::read(sweep.join(format!("error_{head}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    // A second call reads the finished points back and writes the same table.
    let o = run(&["--quiet", "experiment", exp_s]);
    let again = text(&o);
    assert!(o.status.success(), "{again}");
    assert_eq!(again.matches("already done, read back").count(), 2, "{again}");
    assert_eq!(std::fs::read_to_string(sweep.join("results.md")).unwrap(), md);
}

#[test]
fn unknown_head_in_a_sweep_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        "[data]\nmanifest = \"m.csv\"\n[extractor]\ntype = \"efficientnet_lite0\"\n[[heads]]\ntype = \"classification\"\nname = \"morphology\"\n",
    )
    .unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(&exp, "base = \"base.toml\"\n[sweep]\nhead_sets = [[\"phase\"]]\n").unwrap();
    let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("exp.toml") && out.contains("`phase`") && out.contains("morphology"), "{out}");
}
