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
