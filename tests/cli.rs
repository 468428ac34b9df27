//! The `furcate` binary end to end: info, train, eval, predict, extract,
//! resume after SIGKILL, and the errors a user meets.

use std::path::{Path, PathBuf};

use crate::common::{
    self, class_and_value_heads, config_text, dataset as make_dataset, dataset_3x6, furcate, run, s, text,
    write_config, LITE0_32,
};

fn dataset(dir: &Path) -> PathBuf {
    dataset_3x6(dir)
}

fn config(dir: &Path, manifest: &Path, training: &str) -> PathBuf {
    let heads = class_and_value_heads("morphology", "volume_fraction");
    let text =
        config_text(manifest, LITE0_32, &heads, &format!("test_fraction = 0.25\nseed = 3\n{training}\n"));
    write_config(dir, "run.toml", &text)
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
    // Written through temporary files, yet with the permissions of any file written here.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for f in ["metrics.json", "checkpoint/model.safetensors", "checkpoint/state.json"] {
            assert_eq!(mode(&out.join(f)), mode(&plain), "{f}");
        }
    }
    let strays: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(strays.is_empty(), "left beside the run folder: {strays:?}");
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
    common::assert_eval_reproduces(&out, &metrics);

    // The report drawn while training shows the test micrographs: every
    // misclassified test image (predictions.csv says which) and only those,
    // and the value head's worst predicted images, each with its thumbnail.
    let trained = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_report_galleries(&trained, &std::fs::read_to_string(out.join("predictions.csv")).unwrap());

    // Besides its micrographs, it is the report drawn later from the folder
    // (metrics.json and history.csv read back).
    let without_images = |html: &str| -> String {
        let no_png: String = html
            .split("data:image/png;base64,")
            .map(|part| part.split_once('"').map_or(part, |p| p.1))
            .collect();
        let no_galleries: String = no_png
            .split("<div class=\"micrographs\">")
            .map(|part| part.split_once("<!-- /micrographs -->").map_or(part, |p| p.1))
            .collect();
        let kept = no_galleries.lines().filter(|l| !l.is_empty() && !l.contains("No micrographs"));
        kept.collect::<Vec<_>>().join("\n")
    };
    let files = furcate_core::report::write_report(&out).unwrap();
    let redrawn = std::fs::read_to_string(&files.html).unwrap();
    assert!(!redrawn.contains("<div class=\"micrographs\">") && redrawn.contains("No micrographs"));
    assert_eq!(without_images(&trained), without_images(&redrawn));
    assert!(files.plots.len() >= 4, "{:?}", files.plots);

    // predict: one row per image, a column per head.
    let csv = common::predict_dataset(&out, &manifest, &dir.path().join("pred.csv"));
    assert_eq!(csv.lines().count(), 37);
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains("morphology_pred,morphology_probability,volume_fraction_pred"));

    // A missing image, or a missing run folder: the OS's own words, as `train` gives them.
    let images = manifest.parent().unwrap().join("images");
    let o = run(&["predict", s(&out), s(&images.join("absent.png"))]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("absent.png") && text(&o).contains("No such file or directory"),
        "{}",
        text(&o)
    );
    let o = run(&["predict", s(&dir.path().join("no_run")), s(&images)]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no_run") && text(&o).contains("No such file or directory"), "{}", text(&o));

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

/// The galleries of `report` against the run's `predictions` (CSV): the
/// morphology head's misclassified test images are exactly the test rows
/// whose prediction is not the label, each shown with its thumbnail; the
/// volume fraction's worst predicted image (largest |error|) leads its gallery.
fn assert_report_galleries(report: &str, predictions: &str) {
    let mut r = csv::Reader::from_reader(predictions.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let test: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[col("split")] == "test").collect();
    let (truth, pred) = (col("morphology_true"), col("morphology_pred"));
    let wrong: Vec<&str> = test.iter().filter(|r| r[truth] != r[pred]).map(|r| &r[col("file")]).collect();
    let right: Vec<&str> = test.iter().filter(|r| r[truth] == r[pred]).map(|r| &r[col("file")]).collect();
    let heading = format!("Misclassified test images ({} of {} labelled)", wrong.len(), test.len());
    let gallery = report.split(&heading).nth(1).unwrap_or_else(|| panic!("no `{heading}` in the report"));
    let gallery = gallery.split("<!-- /micrographs -->").next().unwrap();
    for f in &wrong {
        assert!(
            gallery.contains(&format!("<code class=\"file\">{f}</code>")),
            "{f} missing from the gallery"
        );
    }
    for f in &right {
        assert!(!gallery.contains(&format!(">{f}<")), "{f} was classified right, yet is in the gallery");
    }
    assert_eq!(gallery.matches("<img alt=").count(), wrong.len(), "one thumbnail per misclassified image");
    let error = |r: &&csv::StringRecord| {
        let v = |c: &str| r[col(c)].parse::<f64>().unwrap();
        (v("volume_fraction_pred") - v("volume_fraction_true")).abs()
    };
    let worst = test.iter().max_by(|a, b| error(a).total_cmp(&error(b))).unwrap();
    let values = report.split("Worst predicted test images").nth(1).expect("a worst-predicted gallery");
    let first = values.split("<code class=\"file\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(first, &worst[col("file")], "the worst prediction leads");
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

/// A config of `heads` (TOML `[[heads]]` tables) on `manifest`, with `training`.
fn config_with_heads(dir: &Path, manifest: &Path, heads: &str, training: &str) -> PathBuf {
    write_config(dir, "heads.toml", &config_text(manifest, LITE0_32, heads, &format!("{training}\n")))
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

const THREE_HEADS: &str = "[[heads]]\ntype = \"classification\"\nname = \"morphology\"\n\n[[heads]]\n\
type = \"classification\"\nname = \"volume_fraction_class\"\n\n[[heads]]\ntype = \"regression\"\n\
name = \"volume_fraction\"\n";

/// Small data sets say so: a test part under 10 images, a class with one
/// training image, one class only; early stopping's state is printed; the
/// exact-match line names the heads it covers; `--json` prints one document.
#[test]
fn small_data_warns_and_says_what_the_numbers_cover() {
    let dir = tempfile::tempdir().unwrap();
    // One morphology, 2 fractions x 2 images: each stratum gives 1 test and 1 training image.
    let manifest = make_dataset(dir.path(), 1, 2);
    let cfg = config_with_heads(dir.path(), &manifest, THREE_HEADS, "epochs = 5\ntest_fraction = 0.25");
    let out = dir.path().join("tiny");
    let o = furcate()
        .args(["--quiet", "train", s(&cfg), "--out", s(&out)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains('\u{1b}'), "ANSI codes with NO_COLOR: {stderr}");
    for w in [
        "the test part has only 2 images",
        "head `morphology`: the training rows hold one class only",
        "head `volume_fraction_class`: class `0.10` has 1 training image",
    ] {
        assert!(stderr.contains(w), "`{w}` not in {stderr}");
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("early stopping: off, there is no validation part"), "{stdout}");
    assert!(
        stdout.contains(
            "exact match (morphology + volume_fraction_class right; not counted, no tolerance: volume_fraction)"
        ),
        "{stdout}"
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["exact_match_heads"], serde_json::json!(["morphology", "volume_fraction_class"]));
    assert!(metrics["warnings"].as_array().unwrap().len() >= 3);
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("the test part has only 2 images"));

    // With a tolerance the value head counts; --json is one document on stdout.
    let heads =
        THREE_HEADS.replace("name = \"volume_fraction\"\n", "name = \"volume_fraction\"\ntolerance = 0.5\n");
    let cfg = config_with_heads(dir.path(), &manifest, &heads, "epochs = 5\ntest_fraction = 0.25");
    let out = dir.path().join("tiny_json");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--json", "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    assert_eq!(
        doc["evaluation"]["exact_match_heads"],
        serde_json::json!(["morphology", "volume_fraction_class", "volume_fraction"])
    );
    assert_eq!(doc["run_folder"].as_str().unwrap(), s(&out));

    // predict --probabilities: one column per class, summing to 1; --json parses.
    let images = manifest.parent().unwrap().join("images");
    let o = run(&["predict", s(&out), s(&images), "--probabilities"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut r = csv::Reader::from_reader(o.stdout.as_slice());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let p_cols: Vec<usize> =
        (0..header.len()).filter(|&i| header[i].starts_with("volume_fraction_class_p_")).collect();
    assert_eq!(p_cols.len(), 2, "{header:?}");
    for row in r.records() {
        let row = row.unwrap();
        let sum: f64 = p_cols.iter().map(|&i| row[i].parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{row:?}");
    }
    let o = run(&["predict", s(&out), s(&images), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON document");
    assert_eq!(rows.as_array().unwrap().len(), 4);
    let p = &rows[0]["heads"]["volume_fraction_class"]["probabilities"];
    assert_eq!(p.as_object().unwrap().len(), 2);
    assert!(rows[0]["heads"]["volume_fraction"]["value"].is_number());
}

/// The default validation part: 10 % of a training part of 50 rows or more
/// with Adam; none with lbfgs below 100 validation rows.
#[test]
fn default_validation_part_follows_the_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = make_dataset(dir.path(), 3, 12); // 72 images, 54 after the test part
    let cfg = config(dir.path(), &manifest, "epochs = 5");
    let out = dir.path().join("adam");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("validation part: 0.1 of the 54 training rows"), "{}", text(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["n_val"], 6);
    let cfg = config(dir.path(), &manifest, "epochs = 5\noptimizer = \"lbfgs\"");
    let out = dir.path().join("lbfgs");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("early stopping: off with lbfgs"), "{}", text(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["n_val"], 0);
    // An explicit 0 is kept, and patience with it is refused at its line.
    let cfg = config(dir.path(), &manifest, "epochs = 5\nvalidation_fraction = 0.0\npatience = 3");
    let o = run(&["train", s(&cfg), "--out", s(&dir.path().join("bad"))]);
    assert!(!o.status.success() && text(&o).contains("patience needs a validation part"), "{}", text(&o));
}

/// `--folds 3`: stratified folds, out-of-fold predictions of every image
/// exactly once, folds.csv and metrics.json's mean ± std agree, the same
/// seed gives the same folds and predictions, the final model predicts.
#[test]
fn cross_validation_scores_every_image_out_of_fold() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path()); // 3 morphologies x 2 fractions x 6 images
    let cfg = config(dir.path(), &manifest, "epochs = 20");
    let out = dir.path().join("cv");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--folds", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cross-validation, 3 folds (mean ± std over folds)"), "{}", text(&o));
    assert!(text(&o).contains("trained on all the labelled images"), "{}", text(&o));

    let mut r = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (file, split, fold, morph) = (col("file"), col("split"), col("fold"), col("morphology_true"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let mut files: Vec<String> = rows.iter().map(|r| r[file].to_string()).collect();
    files.sort();
    let mut expected: Vec<String> =
        csv::Reader::from_path(&manifest).unwrap().records().map(|r| r.unwrap()[0].to_string()).collect();
    expected.sort();
    assert_eq!(files, expected, "every image exactly once");
    assert!(rows.iter().all(|r| &r[split] == "out_of_fold"));
    // Stratified: each fold holds 12 images, 4 of each morphology.
    for k in 1..=3 {
        let in_fold: Vec<&csv::StringRecord> = rows.iter().filter(|r| r[fold] == *k.to_string()).collect();
        assert_eq!(in_fold.len(), 12, "fold {k}");
        let mut per: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &in_fold {
            *per.entry(&r[morph]).or_default() += 1;
        }
        assert!(per.values().all(|n| *n == 4), "fold {k}: {per:?}");
    }

    // folds.csv: a row per fold and head, then mean and std; metrics.json agrees.
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let cv = &metrics["cross_validation"];
    assert_eq!(cv["k"], 3);
    let mut r = csv::Reader::from_path(out.join("folds.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let err = header.iter().position(|h| h == "error_rate").unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3 * 2 + 2 * 2);
    let fold_errors: Vec<f64> = rows
        .iter()
        .filter(|r| &r[1] == "morphology" && r[0].parse::<usize>().is_ok())
        .map(|r| r[err].parse().unwrap())
        .collect();
    assert_eq!(fold_errors.len(), 3);
    let mean = fold_errors.iter().sum::<f64>() / 3.0;
    let cv_mean = cv["heads"]["morphology"]["error_rate"]["mean"].as_f64().unwrap();
    assert!((mean - cv_mean).abs() < 1e-6, "{mean} vs {cv_mean}");
    assert!(cv["heads"]["volume_fraction"]["mae"]["std"].as_f64().unwrap() >= 0.0);
    // Pooled out-of-fold scores cover every image.
    assert_eq!(metrics["heads"]["morphology"]["metrics"]["n"], 36);
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("Cross-validation (3 folds)") && report.contains("error rate of each fold"));
    assert!(report.contains("predicted vs true (out of fold"), "parity plot of the out-of-fold predictions");

    // The same seed: the same folds and predictions.
    let again = dir.path().join("cv2");
    let o = run(&["train", s(&cfg), "--out", s(&again), "--folds", "3", "--no-report", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["cross_validation"]["fold_of"], cv["fold_of"]);
    for f in ["predictions.csv", "folds.csv"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(again.join(f)).unwrap(), "{f} differs");
    }
    // The final model predicts; eval without --data shows the out-of-fold
    // scores training recorded (saying so), as text and as JSON.
    let images = manifest.parent().unwrap().join("images");
    let o = run(&["predict", s(&out), s(&images)]);
    assert!(o.status.success() && o.stdout.split(|b| *b == b'\n').count() > 36, "{}", text(&o));
    let o = run(&["eval", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.starts_with("out-of-fold scores (3-fold cross-validation"), "{shown}");
    assert!(shown.contains("scored rows: 36") && shown.contains("mean ± std over folds"), "{shown}");
    let o = run(&["eval", s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let oof: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(oof["scored"], "out_of_fold");
    assert_eq!(oof["n"], 36);
    let names: Vec<&str> =
        oof["heads"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["morphology", "volume_fraction"], "model order");
    assert_eq!(oof["heads"][0]["score"]["error_rate"], metrics["heads"]["morphology"]["error_rate"]);
    assert_eq!(
        oof["heads"][1]["score"]["metrics"]["mae"],
        metrics["heads"]["volume_fraction"]["metrics"]["mae"]
    );
    assert_eq!(oof["cross_validation"], metrics["cross_validation"]);
    // --data still scores other images (their scores, not the out-of-fold ones).
    let o = run(&["eval", s(&out), "--data", s(&manifest), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let other: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(other.get("scored").is_none() && other["n"] == 36, "{other}");
    // folds = 1 is refused at its line.
    let bad = config(dir.path(), &manifest, "epochs = 2\nfolds = 1");
    let o = run(&["train", s(&bad), "--out", s(&dir.path().join("bad"))]);
    assert!(
        !o.status.success() && text(&o).contains("line 22") && text(&o).contains("folds"),
        "{}",
        text(&o)
    );
}

/// `furcate check`: exit 0 with a summary when training would start;
/// duplicates named by both lines; every config problem at once with its
/// line; unreadable images and unusable labels make it fail.
#[test]
fn check_validates_config_and_data_without_training() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = config(dir.path(), &manifest, "epochs = 2");
    let o = run(&["check", s(&cfg), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(r["ok"], true);
    assert_eq!(r["images"], 36);
    assert_eq!(
        r["image_kinds"],
        serde_json::json!([{"width": 32, "height": 32, "bit_depth": 8, "channels": 1, "count": 36}])
    );
    let morph = &r["heads"][0];
    assert_eq!(morph["head"], "morphology");
    let classes = morph["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 3);
    for c in classes {
        let total = c["train"].as_u64().unwrap() + c["val"].as_u64().unwrap() + c["test"].as_u64().unwrap();
        assert_eq!(total, 12, "{c}");
        assert!(c["test"].as_u64().unwrap() > 0);
    }
    let range = r["heads"][1]["range"].as_array().unwrap();
    assert!(range[0].as_f64().unwrap() < range[1].as_f64().unwrap());
    assert_eq!(r["extractor"]["weights_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["extractor"]["cache_bytes"], 36 * 1280 * 4);
    assert!(!dir.path().join("runs").exists(), "check trained nothing");
    let o = run(&["check", s(&cfg)]);
    assert!(o.status.success() && text(&o).contains("ok: training would start"), "{}", text(&o));

    // The same file twice and the same pixels under another name: both lines named.
    let base = std::fs::read_to_string(&manifest).unwrap();
    let lines: Vec<&str> = base.lines().collect();
    let first_file = lines[1].split(',').next().unwrap();
    let images = manifest.parent().unwrap();
    std::fs::copy(images.join(first_file), images.join("images/copy.png")).unwrap();
    let dup = format!(
        "{base}{}\n{}\n",
        lines[1],
        lines[2].replacen(lines[2].split(',').next().unwrap(), "images/copy.png", 1)
    );
    let dup_manifest = images.join("dup.csv");
    std::fs::write(&dup_manifest, &dup).unwrap();
    let cfg_dup = config(dir.path(), &dup_manifest, "epochs = 2");
    // Training would refuse the same file twice (`[data] duplicates = "error"`, the default).
    let o = run(&["check", s(&cfg_dup), "--json"]);
    assert!(!o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], false);
    let errors = r["errors"].to_string();
    assert!(errors.contains("line 38") && errors.contains("line 2 ") && errors.contains("drop"), "{errors}");
    let dups = r["duplicates"].as_array().unwrap();
    let find =
        |kind: &str| dups.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{kind}: {dups:?}"));
    assert!(find("same file")["first"].as_str().unwrap().starts_with("line 2 "));
    assert!(find("same file")["second"].as_str().unwrap().starts_with("line 38 "));
    assert!(find("same pixels")["second"].as_str().unwrap().contains("copy.png"));
    // With `duplicates = "drop"` it would train on the rows left, with a warning.
    let drop_text = std::fs::read_to_string(&cfg_dup).unwrap().replacen(
        "feature_cache = \"features\"",
        "feature_cache = \"features\"\nduplicates = \"drop\"",
        1,
    );
    let cfg_drop = dir.path().join("drop.toml");
    std::fs::write(&cfg_drop, drop_text).unwrap();
    let o = run(&["check", s(&cfg_drop), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["images"], 37, "38 rows less the repeat");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("line 38") && warnings.contains("dropped"), "{warnings}");
    assert!(warnings.contains("same pixels"), "{warnings}");

    // Two config problems at once, each with its line.
    let bad = config(dir.path(), &manifest, "epochs = 0\nlearning_rate = -1.0");
    let o = run(&["check", s(&bad)]);
    assert!(!o.status.success(), "{}", text(&o));
    for e in ["2 problems", "line 22: training.learning_rate", "line 21: training.epochs"] {
        assert!(text(&o).contains(e), "`{e}` not in {}", text(&o));
    }
    // A corrupt image and an unusable label fail, naming the line.
    let corrupt = images.join("images/corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnope").unwrap();
    let header: Vec<&str> = lines[0].split(',').collect();
    let vf = header.iter().position(|h| *h == "volume_fraction").unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(str::to_string).collect();
    cells[vf] = "lots".into();
    let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    l[1] = l[1].replacen(first_file, "images/corrupt.png", 1);
    l[3] = cells.join(",");
    let bad_manifest = images.join("bad.csv");
    std::fs::write(&bad_manifest, l.join("\n") + "\n").unwrap();
    let cfg_bad = config(dir.path(), &bad_manifest, "epochs = 2");
    let o = run(&["check", s(&cfg_bad), "--json"]);
    assert!(!o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], false);
    let errors = r["errors"].to_string();
    assert!(errors.contains("line 2") && errors.contains("corrupt.png"), "{errors}");
    assert!(errors.contains("line 4") && errors.contains("lots"), "{errors}");
}

/// `furcate extract` on a config without heads writes the manifest's labels
/// beside the features; `--images` extracts a folder without `[data]`.
#[test]
fn extract_without_heads_carries_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let cfg = dir.path().join("extract.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\nmanifest = \"{}\"\nfeature_cache = \"features\"\n\n[extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n",
            manifest.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("f.safetensors");
    let o = run(&["extract", s(&cfg), "--out", s(&out), "--csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut r = csv::Reader::from_path(out.with_extension("csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[0], "file");
    assert!(header.contains(&"morphology".to_string()) && header.contains(&"volume_fraction".to_string()));
    assert!(header.iter().any(|h| h == "f0"));
    assert_eq!(r.records().count(), 36);
    let no_data = dir.path().join("nodata.toml");
    std::fs::write(&no_data, "[extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n").unwrap();
    let images = manifest.parent().unwrap().join("images");
    let out2 = dir.path().join("g.safetensors");
    let o = run(&["extract", s(&no_data), "--images", s(&images), "--out", s(&out2)]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(furcate_core::features::load_features(&out2).unwrap().features.size()[0], 36);
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
    let o = run(&["train", s(&cfg), "--out", s(&out)]);
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
    // The report maps each test image's 9 tiles over its thumbnail: in the
    // file's pixels (below the cropped data bar), each tile's value in its tooltip.
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    let maps = report.split("Tile map of the test images (3 of 3)").nth(1).expect("a tile map");
    let maps = maps.split("<!-- /micrographs -->").next().unwrap();
    assert_eq!(maps.matches("<svg class=\"tilemap\" viewBox=\"0 0 384 416\"").count(), 3, "{maps}");
    assert_eq!(maps.matches("<image href=\"data:image/png;base64,").count(), 3);
    let number = |text: &str, key: &str| -> u32 {
        text.split(key).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
    };
    let corners: Vec<(u32, u32)> = maps
        .split("<rect ")
        .skip(1)
        .map(|r| (number(r, "x=\"") + number(r, "width=\""), number(r, "y=\"") + number(r, "height=\"")))
        .collect();
    assert_eq!(corners.len(), 27);
    assert!(corners.iter().all(|&(right, bottom)| right <= 384 && bottom <= 384), "{corners:?}");
    assert_eq!(maps.matches("<title>tile x").count(), 27);
    for l in &lines[1..] {
        let file = l.split(',').next().unwrap();
        assert!(maps.contains(&format!("<code class=\"file\">{file}</code>")), "{file}");
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
    // Cross-validation of a tiled run is refused at the config, naming the key and its line.
    let cfg = real_config(dir.path(), &manifest, "");
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("seed = 1", "seed = 1\nfolds = 3"))
        .unwrap();
    check(&cfg, &["folds", "tile", "line"]);
}

/// Lines of a child's standard error, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (two minutes at most) for a line of `lines` holding `what`; returns it.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with `{what}`: {e}"),
        }
    }
}

/// Two trains on one `--out`: the second fails at once naming the first
/// process; a lock left by a killed run is taken over; `--wait` waits for the
/// holder, then still refuses a folder it finished unless `--force`.
#[test]
fn two_trains_on_one_out_are_kept_apart() {
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let long = config(dir.path(), &manifest, "epochs = 2500\ncheckpoint_every = 100");
    let quick = dir.path().join("quick.toml");
    std::fs::write(&quick, std::fs::read_to_string(&long).unwrap().replace("epochs = 2500", "epochs = 3"))
        .unwrap();
    let out = dir.path().join("run");
    let lock_file = furcate_core::fsutil::OutputLock::file_for(&out);
    assert_eq!(lock_file, dir.path().join(".run.lock"));

    // A first run holds the folder while it trains.
    let mut first = furcate()
        .args(["--quiet", "train", s(&long), "--out", s(&out), "--no-report"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.path().join(".run.partial");
    let t0 = std::time::Instant::now();
    while !partial.exists() {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before training");
        assert!(t0.elapsed().as_secs() < 120, "the first run did not start training in 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The second fails at once, naming the first, and leaves its partial folder alone.
    let o = run(&["train", s(&quick), "--out", s(&out), "--no-report"]);
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains(&format!("pid {}", first.id())), "{msg}");
    assert!(msg.contains("another furcate process") && msg.contains("--wait"), "{msg}");
    assert!(
        msg.contains(&lock_file.display().to_string()) && msg.contains(&long.display().to_string()),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(partial.exists() && first.try_wait().unwrap().is_none(), "the first run was disturbed");

    // Killed, the first run leaves its lock file, which holds nothing: the next run takes it over.
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(lock_file.exists() && !out.exists());
    let o = run(&["train", s(&quick), "--out", s(&out), "--no-report"]);
    let msg = text(&o);
    assert!(o.status.success(), "{msg}");
    assert!(msg.contains("stale lock") && msg.contains(&format!("pid {}", first.id())), "{msg}");
    assert!(out.join("metrics.json").is_file());
    assert!(!lock_file.exists(), "the lock file outlived its run");

    // --wait: queued behind the holder (here this test), then the folder the
    // holder finished meanwhile is still refused without --force.
    let out2 = dir.path().join("run2");
    let held = furcate_core::fsutil::OutputLock::acquire(&out2, false).unwrap();
    let mut waiting = furcate()
        .args(["--quiet", "train", s(&quick), "--out", s(&out2), "--no-report", "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut waiting);
    let line = wait_for_line(&lines, "waiting for");
    assert!(line.contains(&format!("pid {}", std::process::id())), "{line}");
    std::fs::create_dir(&out2).unwrap();
    std::fs::write(out2.join("finished"), "by the holder").unwrap();
    assert!(waiting.try_wait().unwrap().is_none(), "--wait did not wait");
    drop(held);
    wait_for_line(&lines, "already exists (use --force to replace it)");
    assert!(!waiting.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(out2.join("finished")).unwrap(), "by the holder");

    // With --force it replaces that folder once the holder lets go.
    let held = furcate_core::fsutil::OutputLock::acquire(&out2, false).unwrap();
    let mut waiting = furcate()
        .args(["--quiet", "train", s(&quick), "--out", s(&out2), "--no-report", "--wait", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut waiting);
    wait_for_line(&lines, "waiting for");
    // The test process holds it: taking it again without waiting fails too.
    let again = furcate_core::fsutil::OutputLock::acquire(&out2, false).unwrap_err();
    assert!(
        matches!(&again, furcate_core::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock)
    );
    drop(held);
    assert!(waiting.wait().unwrap().success());
    assert!(out2.join("metrics.json").is_file() && !out2.join("finished").exists());
    assert!(!furcate_core::fsutil::OutputLock::file_for(&out2).exists());
}

/// A linear regression head on the stem is least squares, solved exactly,
/// its weight decay chosen by leave-one-out along a path whose best point is
/// inside it; `bounds = [0, 1]` clips its predictions and costs nothing.
#[test]
fn bounds_cost_a_linear_regression_head_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut synth = furcate_synth::SynthConfig {
        size: 32,
        images_per_class: 8,
        volume_fractions: vec![0.1, 0.2, 0.3, 0.4],
        jitter: 1.0,
        ..Default::default()
    };
    synth.morphologies.truncate(2);
    let data = dir.path().join("data");
    furcate_synth::write_dataset(&synth, &data, false).unwrap();
    let manifest = data.join(furcate_synth::MANIFEST_FILE);
    let extractor = format!("{LITE0_32}taps = [\"stem\"]\n");
    let mae = |bounds: &str| {
        let heads = format!("[[heads]]\ntype = \"regression\"\nname = \"volume_fraction\"\n{bounds}\n");
        let training = "optimizer = \"lbfgs\"\nweight_decay = \"auto\"\ntest_fraction = 0.25\nseed = 2\n";
        let cfg =
            write_config(dir.path(), "ridge.toml", &config_text(&manifest, &extractor, &heads, training));
        let out = dir.path().join(format!("run{}", bounds.len()));
        let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
        assert!(o.status.success(), "{}", text(&o));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
        let choice = &m["choices"]["heads"][0];
        let tried: Vec<f64> = choice["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["weight_decay"].as_f64().unwrap())
            .collect();
        assert!(choice["candidates"][0]["measure"] == "loo_mae", "{choice}");
        let chosen = choice["weight_decay"].as_f64().unwrap();
        let (lo, hi) = tried.iter().fold((f64::MAX, 0.0f64), |(l, h), &w| (l.min(w), h.max(w)));
        assert!(chosen > lo && chosen < hi, "chosen {chosen} at an end of [{lo}, {hi}]");
        let values = &m["heads"]["volume_fraction"]["metrics"];
        (values["mae"].as_f64().unwrap(), values["clipped"].as_u64())
    };
    let (free, none) = mae("");
    let (bounded, clipped) = mae("bounds = [0.0, 1.0]");
    assert_eq!(none, None, "no bounds, nothing clipped");
    assert!(clipped.is_some(), "bounded runs count clipped predictions");
    assert!(bounded <= free + 1e-12, "bounds cost accuracy: {bounded} vs {free}");
    assert!(free < 0.05, "{free}");
}

/// Tiles carrying their image's label bias a value head toward the mean (a
/// tile's own fraction scatters around its frame's): heterogeneous SEM-like
/// frames, a data bar cropped, 256 px tiles, two-point features and a
/// porosity head, predicted on larger frames of other fields. Trained on the
/// images (`tile_fit` auto: value heads on images) it is within 0.01; on the
/// tiles (`tile_fit = "tile"`) the slope is attenuated and it is worse.
#[test]
fn a_value_head_on_tiled_frames_trains_on_the_images() {
    let dir = tempfile::tempdir().unwrap();
    let frames = common::heterogeneous_frames(&dir.path().join("images"), 16, 768, 1024, 1);
    let manifest = dir.path().join("m.csv");
    write_manifest(
        &manifest,
        "file,porosity",
        &frames.iter().map(|(f, p)| format!("images/{f},{p}")).collect::<Vec<_>>(),
    );
    let new = common::heterogeneous_frames(&dir.path().join("new"), 4, 1536, 2048, 2);
    let mae = |tile_fit: &str| {
        let cfg = std::fs::read_to_string(real_config(dir.path(), &manifest, tile_fit))
            .unwrap()
            .replace("size = 128, stride = 128", "size = 256")
            .replace("size = 64\nwindow = 8", "size = 128")
            .replace("epochs = 300", "weight_decay = \"auto\"\nepochs = 300");
        let path = write_config(dir.path(), "frames.toml", &cfg);
        let out = dir.path().join(format!("run{}", tile_fit.len()));
        let o = run(&["train", s(&path), "--out", s(&out), "--no-report"]);
        assert!(o.status.success(), "{}", text(&o));
        let images: Vec<String> =
            new.iter().map(|(f, _)| s(&dir.path().join("new").join(f)).to_string()).collect();
        let mut args = vec!["predict", s(&out)];
        args.extend(images.iter().map(String::as_str));
        let o = run(&args);
        assert!(o.status.success(), "{}", text(&o));
        let csv = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5, "{csv}");
        let pred = |line: &str| line.split(',').nth(3).unwrap().parse::<f64>().unwrap();
        new.iter().zip(&lines[1..]).map(|((_, truth), l)| (pred(l) - truth).abs()).sum::<f64>() / 4.0
    };
    let on_images = mae("");
    let on_tiles = mae("tile_fit = \"tile\"");
    eprintln!("porosity MAE on new frames: trained on images {on_images:.4}, on tiles {on_tiles:.4}");
    assert!(on_images < 0.01, "trained on images: MAE {on_images}");
    assert!(on_tiles > on_images, "tiles {on_tiles} vs images {on_images}");
}

/// A training part too small for a validation part chooses the weight decay
/// by 5-fold cross-validation; the folds' fits run side by side, one per
/// thread, each on one intra-op thread. How they are scheduled must not
/// change a fit: every candidate's fit (its objective, gradient, iterations)
/// is bit for bit the same with `--threads 2` as one after another with
/// `--threads 1`, and so are the choices. (Scoring runs on the process's
/// threads, so losses may differ in the last digits.)
#[test]
fn cross_validated_fits_do_not_depend_on_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let heads = format!("[trunk]\nhidden = [16]\n{}", class_and_value_heads("morphology", "volume_fraction"));
    let training =
        "optimizer = \"lbfgs\"\nweight_decay = [1e-3, 1e-1]\nepochs = 60\ntest_fraction = 0.25\nseed = 1\n";
    let cfg = write_config(dir.path(), "cv.toml", &config_text(&manifest, LITE0_32, &heads, training));
    let choices = |threads: &str| {
        let out = dir.path().join(format!("run{threads}"));
        let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report", "--threads", threads]);
        assert!(o.status.success(), "{}", text(&o));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
        m["choices"].clone()
    };
    let (two, one) = (choices("2"), choices("1"));
    let scored_on = two["scored_on"].as_str().unwrap_or_default().to_string();
    assert!(scored_on.contains("5-fold"), "{scored_on}");
    let fits = |c: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
        let candidates = c["trunk_candidates"].as_array().cloned().unwrap_or_default();
        candidates.iter().map(|k| (k["weight_decay"].clone(), k["solve"].clone())).collect()
    };
    assert_eq!(fits(&two).len(), 2, "{two}");
    assert_eq!(fits(&two), fits(&one));
    assert_eq!(two["weight_decay"], one["weight_decay"]);
    for (a, b) in
        two["trunk_candidates"].as_array().unwrap().iter().zip(one["trunk_candidates"].as_array().unwrap())
    {
        let (a, b) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6 * a.abs(), "{a} vs {b}");
    }
}
