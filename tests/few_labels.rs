//! Learning from fewer labels: `[data] unlabelled`, `[training]
//! semi_supervised` and `transductive`, and their errors.

use std::path::Path;

use crate::common::{self, run, s, text};

/// A labelled set (3 morphologies x 2 fractions x 6 images, 32 px) and a pool
/// of 24 unlabelled images of the same kinds (another seed) in `pool/`.
fn labelled_and_pool(dir: &Path) -> std::path::PathBuf {
    let manifest = common::dataset_3x6(dir);
    let mut pool = furcate_synth::SynthConfig {
        size: 32,
        images_per_class: 4,
        volume_fractions: vec![0.1, 0.4],
        seed: 99,
        ..Default::default()
    };
    pool.morphologies.truncate(3);
    furcate_synth::write_dataset(&pool, &dir.join("pool"), false).unwrap();
    manifest
}

fn config(dir: &Path, manifest: &Path, data: &str, training: &str) -> std::path::PathBuf {
    let text = format!(
        "[data]\nmanifest = \"{}\"\nfeature_cache = \"features\"\n{data}\n\n[extractor]\ntype = \"two_point\"\n\
         size = 32\nwindow = 4\n\n[[heads]]\ntype = \"classification\"\nname = \"morphology\"\n\n\
         [training]\noptimizer = \"lbfgs\"\nweight_decay = 1e-3\ntest_fraction = 0.5\nseed = 1\n{training}\n",
        manifest.display()
    );
    common::write_config(dir, "few.toml", &text)
}

fn metrics(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("metrics.json")).unwrap()).unwrap()
}

/// Unlabelled images are extracted, always in the training part (never
/// scored), and label propagation gives each a label; transductive runs
/// say how many test images joined, and the test labels are still scored.
#[test]
fn unlabelled_images_train_by_propagation_and_are_never_scored() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = labelled_and_pool(dir.path());
    let pool = "unlabelled = [\"pool/images/*.png\"]";
    let semi = "semi_supervised = \"propagation\"";
    // Trains `name` with these [data] and [training] lines: its run folder and metrics.
    let train = |name: &str, data: &str, training: &str| -> (std::path::PathBuf, serde_json::Value) {
        let cfg = config(dir.path(), &manifest, data, training);
        let out = dir.path().join(name);
        let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
        assert!(o.status.success(), "{}", text(&o));
        let m = metrics(&out);
        (out, m)
    };
    let (out, m) = train("semi", pool, semi);
    let notes = m["notes"].to_string();
    assert!(notes.contains("morphology: 24 unlabelled rows labelled from"), "{notes}");
    assert!(notes.contains("the test part was not used"), "{notes}");
    let predictions = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert!(!predictions.contains("pool"), "an unlabelled image was scored:\n{predictions}");
    assert_eq!(predictions.lines().count() - 1, 18, "half of the 36 labelled images are the test part");

    // Transductive: the 18 test images' pixels join; they are still scored on their labels.
    let (_, m) = train("transductive", pool, &format!("{semi}\ntransductive = true"));
    let notes = m["notes"].to_string();
    assert!(notes.contains("morphology: 42 unlabelled rows"), "{notes}");
    assert!(notes.contains("transductive: 18 of them are the test part"), "{notes}");
    assert!(m["heads"]["morphology"]["metrics"]["error_rate"].as_f64().is_some(), "{m}");

    // With views ([data] augment, tta): the graph's nodes are the images, each
    // view takes its image's label; the counts are of images.
    let views = format!("{pool}\naugment = [\"rot180\"]\ntta = true");
    let (_, m) = train("views", &views, &format!("{semi}\ntransductive = true"));
    let notes = m["notes"].to_string();
    assert!(notes.contains("morphology: 42 unlabelled rows labelled from 18"), "{notes}");
    assert!(notes.contains("transductive: 18 of them are the test part"), "{notes}");
    assert_eq!(m["data"]["views"], 60, "every image has its view: {m}");

    // Auto: every labelled training image's label is hidden once; a head
    // propagates only with strictly fewer errors on them.
    let (_, m) = train("auto", pool, "semi_supervised = \"auto\"\ntransductive = true");
    let notes = m["notes"].to_string();
    let at = notes.find("semi-supervised (auto: morphology ").unwrap_or_else(|| panic!("{notes}"));
    let said = &notes[at..];
    let count = |before: &str| -> usize {
        let end = said.find(before).unwrap_or_else(|| panic!("no `{before}` in {said}"));
        said[..end].rsplit(['(', ' ']).next().unwrap().parse().unwrap()
    };
    let (without, with) = (count(" errors without"), count(" with, of"));
    assert!(said.contains("of 18 hidden labels"), "{said}");
    assert_eq!(said.contains("morphology propagates"), with < without, "{said}");
    assert_eq!(said.contains("42 unlabelled rows labelled from 18"), with < without, "{said}");

    // Off: the pool is extracted but nothing is propagated.
    let (_, m) = train("off", pool, "");
    assert!(!m["notes"].to_string().contains("semi-supervised"));
}

/// Bad values name the key's line; a pattern that matches nothing names the entry.
#[test]
fn few_label_keys_reject_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = labelled_and_pool(dir.path());
    let cases = [
        ("", "semi_supervised = \"magic\"", "magic"),
        ("", "transductive = true", "no effect"),
        ("", "semi_supervised = \"propagation\"\npropagation = { alpha = 1.5 }", "alpha"),
        ("", "semi_supervised = \"auto\"\npropagation = { folds = 1 }", "folds"),
        (
            "unlabelled = [\"pool/images/*.png\"]",
            "semi_supervised = \"auto\"\npropagation = { folds = 40 }",
            "only 18 labelled images",
        ),
        ("unlabelled = [\"nowhere/*.png\"]", "", "nowhere/*.png"),
        ("unlabelled = [\"data/images\"]", "", "both labelled"),
    ];
    for (data, training, needle) in cases {
        let cfg = config(dir.path(), &manifest, data, training);
        let o = run(&["train", s(&cfg), "--out", s(&dir.path().join("bad")), "--no-report"]);
        let t = text(&o);
        assert!(!o.status.success(), "{data} {training} was accepted:\n{t}");
        assert!(t.contains(needle), "{data} {training}: no `{needle}` in:\n{t}");
        assert!(!t.contains("panicked"), "{t}");
        assert!(!dir.path().join("bad").exists(), "a run folder was left by a refused config");
    }
    let cfg = config(dir.path(), &manifest, "", "transductive = true");
    let o = run(&["train", s(&cfg), "--out", s(&dir.path().join("bad")), "--no-report"]);
    assert!(text(&o).contains("line "), "{}", text(&o));
}

/// A config on `manifest` (two-point features): a class head on the
/// morphology, a value head (one hidden layer) on the volume fraction, and
/// these `[training]` lines.
fn class_and_value(dir: &Path, manifest: &Path, training: &str) -> std::path::PathBuf {
    // A hidden layer: the value head is solved by L-BFGS, not in closed form.
    let heads = common::class_and_value_heads("morphology", "volume_fraction") + "hidden = [4]\n";
    let training =
        format!("optimizer = \"lbfgs\"\nweight_decay = 1e-3\ntest_fraction = 0.5\nseed = 1\n{training}\n");
    let extractor = "[extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n";
    common::write_config(dir, "t.toml", &common::config_text(manifest, extractor, &heads, &training))
}

/// The columns of a run's predictions.csv whose names pass `keep`, by file.
fn predicted(out: &Path, keep: impl Fn(&str) -> bool) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let kept: Vec<&str> =
                header.iter().zip(&cells).filter(|(h, _)| keep(h)).map(|(_, c)| *c).collect();
            (cells[0].to_string(), kept.join(","))
        })
        .collect()
}

/// A head that does not propagate (here the value head, and with `auto` the
/// class head its folds leave off) is the labelled-only fit exactly: its
/// predictions with propagation (transductive) equal those of
/// `semi_supervised = "off"`.
#[test]
fn a_head_that_does_not_propagate_is_the_labelled_only_fit() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = common::dataset_3x6(dir.path());
    let value = |h: &str| h == "volume_fraction_pred";
    let train = |name: &str, training: &str| {
        let cfg = class_and_value(dir.path(), &manifest, training);
        let out = dir.path().join(name);
        let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
        assert!(o.status.success(), "{}", text(&o));
        out
    };
    let off = train("off", "");
    let semi = train("semi", "semi_supervised = \"propagation\"\ntransductive = true");
    let notes = metrics(&semi)["notes"].to_string();
    assert!(notes.contains("morphology: 18 unlabelled rows labelled from 18"), "{notes}");
    assert_eq!(predicted(&off, value), predicted(&semi, value));
    // `auto` fits the run with propagation, then restores a class head its
    // folds leave off: here the morphology ties on its hidden labels, so
    // both heads are the labelled-only fit.
    let auto = train("auto", "semi_supervised = \"auto\"\ntransductive = true");
    let notes = metrics(&auto)["notes"].to_string();
    assert!(notes.contains("auto: morphology does not ("), "{notes}");
    assert_eq!(predicted(&off, |_| true), predicted(&auto, |_| true));
}

/// A transductive run trains on the test part's pixels, never on its labels:
/// with the test images' values rewritten in the manifest, every prediction
/// (of the propagating class head and of the value head, which does not
/// propagate) is unchanged.
#[test]
fn a_transductive_run_never_trains_on_test_labels() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = common::dataset_3x6(dir.path());
    let cfg =
        class_and_value(dir.path(), &manifest, "semi_supervised = \"propagation\"\ntransductive = true");
    let predicted = |out: &Path| predicted(out, |h| !h.ends_with("_true"));
    let first = dir.path().join("first");
    let o = run(&["train", s(&cfg), "--out", s(&first), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    let before = predicted(&first);
    assert_eq!(before.len(), 18, "half of the 36 images are the test part");

    // The test images' volume fractions rewritten (the class, hence the split, kept).
    let original = std::fs::read_to_string(&manifest).unwrap();
    let mut lines = original.lines();
    let header = lines.next().unwrap();
    let column = header.split(',').position(|h| h == "volume_fraction").unwrap();
    let mut changed = vec![header.to_string()];
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        if before.contains_key(&cells[0]) {
            cells[column] = "0.9".into();
        }
        changed.push(cells.join(","));
    }
    std::fs::write(&manifest, changed.join("\n") + "\n").unwrap();
    let second = dir.path().join("second");
    let o = run(&["train", s(&cfg), "--out", s(&second), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    let after = std::fs::read_to_string(second.join("predictions.csv")).unwrap();
    assert!(after.contains(",0.9"), "the rewritten labels are scored:\n{after}");
    assert_eq!(before, predicted(&second), "a test label changed a prediction");
}
