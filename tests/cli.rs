//! The `furcate` binary end to end: info, train, eval, predict, extract,
//! resume after SIGKILL, and the errors a user meets.

mod common;

use std::path::{Path, PathBuf};

use common::{dataset as make_dataset, furcate, run, s, text};

/// 3 morphologies x 2 volume fractions x 6 images.
fn dataset(dir: &Path) -> PathBuf {
    make_dataset(dir, 3, 6)
}

fn config(dir: &Path, manifest: &Path, training: &str) -> PathBuf {
    let text = format!(
        r#"[data]
manifest = "{}"
feature_cache = "features"

[extractor]
type = "efficientnet_lite0"
weights = "cache:efficientnet_lite0.safetensors"
size = 32

[[heads]]
type = "classification"
name = "morphology"

[[heads]]
type = "regression"
name = "volume_fraction"

[training]
test_fraction = 0.25
seed = 3
{training}
"#,
        manifest.display()
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn info_reports_libtorch_and_devices() {
    let o = run(&["info"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("libtorch 2.11.0"), "{out}");
    if !tch::Cuda::is_available() {
        assert!(out.contains("cuda: none"), "{out}");
    }
    assert!(out.contains("classification") && out.contains("efficientnet_lite0"), "{out}");
    let o = run(&["info", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["libtorch"]["version"], "2.11.0");
}

#[test]
fn train_eval_predict_extract() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = config(dir.path(), &manifest, "epochs = 60\nvalidation_fraction = 0.2");
    let out = dir.path().join("run1");
    let o = run(&["train", s(&cfg), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("36 extracted, 0 from cache"), "{}", text(&o));
    for f in [
        "config.toml",
        "metrics.json",
        "history.csv",
        "predictions.csv",
        "report.html",
        "checkpoint/model.safetensors",
        "checkpoint/state.json",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["n_test"], 9);
    assert_eq!(metrics["heads"]["morphology"]["type"], "classification");
    assert!(metrics["heads"]["volume_fraction"]["metrics"]["mae"].is_number());
    assert_eq!(metrics["weights_sha256"].as_str().unwrap().len(), 64);
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count() as u64, 1 + metrics["epochs_run"].as_u64().unwrap());
    assert!(history.starts_with("epoch,train_total,val_total,train_morphology,train_volume_fraction"));

    // eval on the test part reproduces the run's own scores.
    let o = run(&["eval", s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["heads"][0]["score"]["error_rate"], metrics["heads"]["morphology"]["error_rate"]);
    assert_eq!(
        eval["heads"][1]["score"]["metrics"]["mae"],
        metrics["heads"]["volume_fraction"]["metrics"]["mae"]
    );

    // predict: one row per image, a column per head.
    let images = manifest.parent().unwrap().join("images");
    let pred = dir.path().join("pred.csv");
    let o = run(&["predict", s(&out), s(&images), "--out", s(&pred)]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(&pred).unwrap();
    assert_eq!(csv.lines().count(), 37);
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains("morphology_pred,morphology_probability,volume_fraction_pred"));

    // A second run on the same images takes every feature from the cache.
    let o = run(&["train", s(&cfg), "--out", s(&dir.path().join("run2")), "--no-report"]);
    assert!(text(&o).contains("0 extracted, 36 from cache"), "{}", text(&o));
    // An existing run folder is refused without --force.
    let o = run(&["train", s(&cfg), "--out", s(&out)]);
    assert!(!o.status.success() && text(&o).contains("--force"), "{}", text(&o));

    // extract: features with file names, and CSV.
    let feats = dir.path().join("f.safetensors");
    let o = run(&["extract", s(&cfg), "--out", s(&feats), "--csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let file = furcate_core::features::load_features(&feats).unwrap();
    assert_eq!(file.features.size(), vec![36, 1280]);
    assert!(file.names[0].starts_with("images/"));
    assert_eq!(std::fs::read_to_string(feats.with_extension("csv")).unwrap().lines().count(), 37);
}

#[test]
fn resume_after_sigkill_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = config(dir.path(), &manifest, "epochs = 2500\ncheckpoint_every = 100");
    let whole = dir.path().join("whole");
    let o = run(&["train", s(&cfg), "--out", s(&whole), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));

    let cut = dir.path().join("cut");
    let snapshot = dir.path().join(".cut.partial/checkpoint/resume.safetensors");
    let mut child = furcate().args(["train", s(&cfg), "--out", s(&cut), "--no-report"]).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !snapshot.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first snapshot");
        assert!(t0.elapsed().as_secs() < 120, "no snapshot after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was not interrupted");
    assert!(!cut.exists(), "an interrupted run left a complete-looking folder");

    let o = run(&["train", s(&cfg), "--out", s(&cut), "--no-report", "--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["history.csv", "predictions.csv", "checkpoint/model.safetensors"] {
        assert_eq!(std::fs::read(whole.join(f)).unwrap(), std::fs::read(cut.join(f)).unwrap(), "{f} differs");
    }
}

#[test]
fn bad_input_gives_clear_errors_and_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let base = std::fs::read_to_string(&manifest).unwrap();
    let case = |name: &str, manifest_text: &str, training: &str, expect: &[&str]| {
        let m = dir.path().join("data").join(format!("{name}.csv"));
        std::fs::write(&m, manifest_text).unwrap();
        let cfg = config(dir.path(), &m, training);
        let out = dir.path().join(format!("out-{name}"));
        let o = run(&["train", s(&cfg), "--out", s(&out)]);
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: succeeded");
        for e in expect {
            assert!(msg.contains(e), "{name}: `{e}` not in: {msg}");
        }
        assert!(!msg.contains("panicked"), "{name}: {msg}");
        assert!(!out.exists(), "{name}: left a run folder");
    };
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    // Corrupt image.
    let first_image = manifest.parent().unwrap().join(lines[1].split(',').next().unwrap());
    let corrupt = dir.path().join("data/images/corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnope").unwrap();
    let mut l = lines.clone();
    l[1] = l[1].replacen(first_image.file_name().unwrap().to_str().unwrap(), "corrupt.png", 1);
    case("corrupt", &(l.join("\n") + "\n"), "epochs = 2", &["corrupt.png", "not a readable image"]);
    // Missing image file.
    let mut l = lines.clone();
    l[2] = l[2].replacen("images/", "images/missing_", 1);
    case("missing", &(l.join("\n") + "\n"), "epochs = 2", &["missing_", "No such file"]);
    // NaN in a regression column, named by line and column.
    let header: Vec<&str> = lines[0].split(',').collect();
    let vf = header.iter().position(|h| *h == "volume_fraction").unwrap();
    let mut cells: Vec<String> = lines[4].split(',').map(str::to_string).collect();
    cells[vf] = "NaN".into();
    lines[4] = cells.join(",");
    case("nan", &(lines.join("\n") + "\n"), "epochs = 2", &["nan.csv", "line 5", "volume_fraction"]);
    // Empty manifest.
    case(
        "empty",
        &(base.lines().next().unwrap().to_string() + "\n"),
        "epochs = 2",
        &["empty.csv", "no images"],
    );
    // Unknown key in the config, with its line.
    case("unknown_key", &base, "epochs = 2\nlearning_rat = 0.1", &["run.toml", "line 22", "learning_rat"]);
    // Unwritable output: the parent is a file.
    let cfg = config(dir.path(), &manifest, "epochs = 2");
    let blocker = dir.path().join("a_file");
    std::fs::write(&blocker, "x").unwrap();
    let o = run(&["train", s(&cfg), "--out", s(&blocker.join("run"))]);
    assert!(!o.status.success() && text(&o).contains("a_file"), "{}", text(&o));
}

#[test]
fn config_errors_point_at_the_toml_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = config(dir.path(), &manifest, "epochs = 2");
    let text0 = std::fs::read_to_string(&cfg).unwrap();
    let check = |name: &str, body: String, expect: &[&str]| {
        std::fs::write(&cfg, body).unwrap();
        let o = run(&["train", s(&cfg), "--out", s(&dir.path().join(name))]);
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: succeeded");
        for e in expect {
            assert!(msg.contains(e), "{name}: `{e}` not in: {msg}");
        }
    };
    check(
        "dup",
        text0.replace("name = \"volume_fraction\"", "name = \"morphology\""),
        &["duplicate head name", "line 16"],
    );
    check(
        "column",
        text0.replace("name = \"volume_fraction\"", "name = \"hardness\""),
        &["hardness", "line 16", "column"],
    );
    check("type", text0.replace("type = \"regression\"", "type = \"regresion\""), &["regresion", "line 15"]);
    check("size", text0.replace("size = 32", "size = 16"), &["size", "32"]);
    // Taps: unknown names list the valid ones, at their line; the two-point
    // extractor has no taps; bad weight decays and a mini-batch L-BFGS are refused.
    check(
        "head_tap",
        text0.replace("name = \"morphology\"", "name = \"morphology\"\ntaps = [\"stage9\"]"),
        &["line 13", "stage9", "head `morphology`", "taps are head"],
    );
    check(
        "extractor_tap",
        text0.replace("size = 32", "size = 32\ntaps = [\"stem\", \"stag2\"]"),
        &["line 9", "stag2", "stem, stage1, stage2, stage3, stage4, stage5, stage6, stage7, head"],
    );
    check(
        "two_point_taps",
        text0.replace("type = \"efficientnet_lite0\"", "type = \"two_point\"\ntaps = [\"stem\"]"),
        &["line 5", "unknown field `taps`"],
    );
    check(
        "decay",
        text0.replace("epochs = 2", "epochs = 2\nweight_decay = \"big\""),
        &["line 22", "weight_decay", "auto"],
    );
    check(
        "lbfgs_batch",
        text0.replace("epochs = 2", "epochs = 2\noptimizer = \"lbfgs\"\nbatch_size = 8"),
        &["line 23", "lbfgs", "full-batch"],
    );
    check(
        "manifest",
        text0.replace(&format!("manifest = \"{}\"", manifest.display()), "manifest = \"nowhere.csv\""),
        &["nowhere.csv", "no such manifest", "furcate generate"],
    );
    // Eval on labelled data with a class the run never saw names the manifest line.
    std::fs::write(&cfg, &text0).unwrap();
    let out = dir.path().join("ok");
    assert!(run(&["train", s(&cfg), "--out", s(&out), "--no-report"]).status.success());
    let base = std::fs::read_to_string(&manifest).unwrap();
    let first = base.lines().nth(1).unwrap();
    let morph = first.split(',').nth(1).unwrap();
    let changed = base.replacen(&format!(",{morph},"), ",martensite,", 1);
    let other = manifest.with_file_name("other.csv");
    std::fs::write(&other, changed).unwrap();
    let o = run(&["eval", s(&out), "--data", s(&other)]);
    let msg = text(&o);
    assert!(
        !o.status.success()
            && msg.contains("other.csv")
            && msg.contains("line 2")
            && msg.contains("martensite"),
        "{msg}"
    );
}

/// Learned loss weights and the value/class consistency metric, end to end:
/// reported in metrics.json and the table, restored by eval, recomputable
/// from predictions.csv; a `[[consistency]]` that does not fit the model is
/// an error naming the file and line.
#[test]
fn learned_weights_and_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = config(dir.path(), &manifest, "epochs = 40\nloss_weighting = \"uncertainty\"");
    let base = std::fs::read_to_string(&cfg).unwrap().replace(
        "[training]",
        "[[heads]]\ntype = \"classification\"\nname = \"volume_fraction_class\"\n\n[training]",
    );
    std::fs::write(&cfg, &base).unwrap();
    let out = dir.path().join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    let printed = text(&o);
    assert!(o.status.success(), "{printed}");
    assert!(printed.contains("consistency volume_fraction -> volume_fraction_class: agreement"), "{printed}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["loss_weighting"], "uncertainty");
    let weights = m["loss_weights"].as_object().unwrap();
    assert_eq!(weights.len(), 3);
    assert!(weights.values().all(|w| w.as_f64().is_some_and(|w| w.is_finite() && w > 0.0)));
    assert!(weights.values().any(|w| (w.as_f64().unwrap() - 1.0).abs() > 1e-3), "weights never moved: {m}");

    // Only the numeric-class head pairs with the value head (morphology's classes are names).
    let pairs = m["consistency"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{m}");
    let pair = &pairs[0];
    assert_eq!(
        (pair["value"].as_str(), pair["class"].as_str()),
        (Some("volume_fraction"), Some("volume_fraction_class"))
    );
    // Recompute both rates from predictions.csv: class centres are 0.1 and 0.4.
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (value, class, truth) =
        (col("volume_fraction_pred"), col("volume_fraction_class_pred"), col("volume_fraction_class_true"));
    let (mut n, mut agree, mut wrong) = (0, 0, 0);
    for row in reader.records() {
        let row = row.unwrap();
        let v: f64 = row[value].parse().unwrap();
        let rounded = if (v - 0.1).abs() <= (v - 0.4).abs() { "0.10" } else { "0.40" };
        n += 1;
        agree += (rounded == &row[class]) as usize;
        wrong += (rounded != &row[truth]) as usize;
    }
    assert_eq!(pair["n"], n);
    assert!(
        (pair["agreement"].as_f64().unwrap() - agree as f64 / n as f64).abs() < 1e-12,
        "{pair} vs {agree}/{n}"
    );
    assert!((pair["rounded_error"].as_f64().unwrap() - wrong as f64 / n as f64).abs() < 1e-12, "{pair}");

    // eval rebuilds the learned weights from the checkpoint and scores the same.
    let o = run(&["eval", s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["consistency"][0]["agreement"], pair["agreement"]);

    let check = |name: &str, extra: &str, expect: &[&str]| {
        std::fs::write(&cfg, format!("{base}\n{extra}")).unwrap();
        let o = run(&["train", s(&cfg), "--out", s(&dir.path().join(name))]);
        let msg = text(&o);
        assert!(!o.status.success(), "{name}: succeeded");
        for e in expect {
            assert!(msg.contains(e), "{name}: `{e}` not in: {msg}");
        }
        assert!(!dir.path().join(name).exists(), "{name}: a run folder was left");
    };
    let line = base.lines().count() + 2;
    let line = format!("line {line}");
    check(
        "no_head",
        "[[consistency]]\nvalue = \"hardness\"\nclass = \"volume_fraction_class\"",
        &["run.toml", &line, "hardness", "no head"],
    );
    check(
        "not_classes",
        "[[consistency]]\nvalue = \"volume_fraction\"\nclass = \"volume_fraction\"",
        &["run.toml", "does not predict classes"],
    );
    check(
        "names",
        "[[consistency]]\nvalue = \"volume_fraction\"\nclass = \"morphology\"",
        &["run.toml", "not all numbers", "centres"],
    );
}

/// L-BFGS trains every kind of model: here a trunk reading one tap, learned
/// loss weights, and a head from the `furcate-heads` crate (gaussian) beside
/// the built-in ones; the log-variances move, the trunk reads only its tap,
/// and `eval` scores the saved run as training did.
#[test]
fn lbfgs_with_trunk_learned_weights_and_a_heads_crate_head() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg =
        config(dir.path(), &manifest, "epochs = 30\noptimizer = \"lbfgs\"\nloss_weighting = \"uncertainty\"");
    let base = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("size = 32", "size = 32\ntaps = [\"stem\", \"stage1\"]\n\n[trunk]\nhidden = [8]\ntaps = [\"stem\"]")
        .replace(
            "[training]",
            "[[heads]]\ntype = \"gaussian\"\nname = \"fraction_gaussian\"\ncolumn = \"volume_fraction\"\n\n[training]",
        );
    std::fs::write(&cfg, &base).unwrap();
    let out = dir.path().join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["choices"]["trunk_taps"], serde_json::json!(["stem"]));
    let weights = m["loss_weights"].as_object().unwrap();
    assert!(weights.values().any(|w| (w.as_f64().unwrap() - 1.0).abs() > 1e-3), "weights never moved: {m}");
    assert!(m["heads"]["fraction_gaussian"]["metrics"]["mae"].is_number(), "{m}");
    let o = run(&["eval", s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        eval["heads"][2]["score"]["metrics"]["mae"],
        m["heads"]["fraction_gaussian"]["metrics"]["mae"]
    );
}

/// The run config of the real-micrograph tests: crop the data bar, tile,
/// two_point features, a porosity regression solved by L-BFGS.
fn real_config(dir: &Path, manifest: &Path, data: &str) -> PathBuf {
    let text = format!(
        r#"[data]
manifest = "{}"
feature_cache = "features"
crop = {{ bottom = {} }}
tile = {{ size = 128, stride = 128 }}
{data}

[extractor]
type = "two_point"
size = 64
window = 8

[[heads]]
type = "regression"
name = "porosity"

[training]
optimizer = "lbfgs"
epochs = 300
test_fraction = 0.25
seed = 1
"#,
        manifest.display(),
        common::DATA_BAR
    );
    let path = dir.join("real.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write_manifest(path: &Path, header: &str, rows: &[String]) {
    std::fs::write(path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
}

#[test]
fn large_12_bit_micrographs_with_a_data_bar_crop_tile_and_predict_porosity() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let train = common::large_micrographs(&images, 12, 384, 11);
    let manifest = dir.path().join("m.csv");
    write_manifest(
        &manifest,
        "file,porosity",
        &train.iter().map(|(f, p)| format!("images/{f},{p}")).collect::<Vec<_>>(),
    );
    let cfg = real_config(dir.path(), &manifest, "");
    let out = dir.path().join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("data: 12 images -> 108 tiles; intensity auto (bit depths: 12-bit x 12)"),
        "{}",
        text(&o)
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["data"]["bit_depths"]["12-bit"], 12);
    assert_eq!(metrics["data"]["tiles"], 108);
    assert_eq!(metrics["n_test"], 3, "scores are per image");
    assert!(metrics["heads"]["porosity"]["tiles"]["metrics"]["mae"].is_number(), "{metrics}");
    assert!(metrics["heads"]["porosity"]["metrics"]["mae"].as_f64().unwrap() < 0.02, "{metrics}");
    // predictions.csv: one row per test image, with its tile count and spread.
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "file,split,tiles,porosity_true,porosity_pred,porosity_tile_std");
    assert_eq!(lines.len(), 4, "{csv}");
    for l in &lines[1..] {
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(cells[2], "9");
        let (truth, pred): (f64, f64) = (cells[3].parse().unwrap(), cells[4].parse().unwrap());
        assert!((truth - pred).abs() < 0.02, "{l}");
    }
    // No tile of a test image was trained on: the split is by image.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoint/state.json")).unwrap()).unwrap();
    let test: Vec<u64> =
        state["split"]["test"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(test.len(), 3);
    assert!(state["split"]["train"].as_array().unwrap().iter().all(|v| !test.contains(&v.as_u64().unwrap())));

    // A new large micrograph: predict tiles it the way the run was trained.
    let new = common::large_micrographs(&dir.path().join("new"), 1, 384, 99);
    let path = dir.path().join("new").join(&new[0].0);
    let o = run(&["predict", s(&out), s(&path), "--tiles"]);
    assert!(o.status.success(), "{}", text(&o));
    let out_csv = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out_csv.lines().collect();
    assert_eq!(lines[0], "file,split,tiles,tile,porosity_pred,porosity_tile_std");
    assert_eq!(lines.len(), 1 + 1 + 9, "{out_csv}");
    let image_row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((image_row[2], image_row[3]), ("9", "all"));
    let pred: f64 = image_row[4].parse().unwrap();
    assert!((pred - new[0].1).abs() < 0.02, "predicted {pred}, truth {}", new[0].1);
    assert!(lines[2].contains(",x0_y0,"), "{}", lines[2]);

    // Too small for the extractor: refused, naming the file and its size.
    let tiny = dir.path().join("tiny.png");
    image::GrayImage::from_pixel(8, 8, image::Luma([0])).save(&tiny).unwrap();
    let o = run(&["predict", s(&out), s(&tiny)]);
    assert!(
        !o.status.success() && text(&o).contains("tiny.png") && text(&o).contains("8 x 8"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
}

#[test]
fn real_micrograph_errors_name_the_file_or_line() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let set = common::large_micrographs(&images, 4, 256, 5);
    let rows: Vec<String> = set.iter().map(|(f, p)| format!("images/{f},{p},0.5")).collect();
    let manifest = dir.path().join("m.csv");
    write_manifest(&manifest, "file,porosity,pixel_size", &rows);
    let check = |cfg: &Path, needles: &[&str]| {
        let o = run(&["train", s(cfg), "--out", s(&dir.path().join("run")), "--no-report"]);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(!t.contains("panicked"), "{t}");
        for n in needles {
            assert!(t.contains(n), "`{n}` not in: {t}");
        }
    };
    // A crop larger than the image names the file and its size.
    let cfg = real_config(dir.path(), &manifest, "");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("bottom = 32", "bottom = 300"))
        .unwrap();
    check(&cfg, &[&set[0].0, "256 x 288"]);
    // A non-positive pixel size names the manifest line (the header is line 1).
    let mut bad = rows.clone();
    bad[1] = bad[1].replace(",0.5", ",-1");
    write_manifest(&manifest, "file,porosity,pixel_size", &bad);
    check(&real_config(dir.path(), &manifest, "pixel_size = 0.5"), &["line 3", &set[1].0, "pixel_size"]);
    // 12-bit data read with full_range: a warning names the file.
    write_manifest(&manifest, "file,porosity,pixel_size", &rows);
    let cfg = real_config(dir.path(), &manifest, "intensity = \"full_range\"");
    let o = run(&["extract", s(&cfg), "--out", s(&dir.path().join("f.safetensors"))]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("less than 1/16") && text(&o).contains(&set[0].0), "{}", text(&o));
    // An unknown intensity mode is a config error naming the line.
    let cfg = real_config(dir.path(), &manifest, "intensity = \"twelve\"");
    check(&cfg, &["intensity", "bit_depth"]);
}
