//! `[data] augment` and `tta` end to end: views of the training images are
//! extracted and trained on, the test scores count images, and `predict
//! --tta` is the mean of the predictions of the image's transformed copies.

use std::path::Path;

use crate::common::{class_and_value_heads, config_text, dataset_3x6, run, s, text, write_config, LITE0_32};

/// The CSV's rows as (header -> cell) maps.
fn csv_rows(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| header.iter().map(|h| h.to_string()).zip(l.split(',').map(str::to_string)).collect())
        .collect()
}

fn number(row: &std::collections::BTreeMap<String, String>, column: &str) -> f64 {
    row[column].parse().unwrap_or_else(|_| panic!("{column}: {row:?}"))
}

fn train(dir: &Path, manifest: &Path, data: &str, out: &str) -> (String, serde_json::Value) {
    let heads = class_and_value_heads("morphology", "volume_fraction");
    let training =
        "optimizer = \"lbfgs\"\nweight_decay = [1e-3, 1e-1]\nepochs = 200\ntest_fraction = 0.25\nseed = 3\n";
    let text_ = config_text(manifest, LITE0_32, &heads, training).replacen(
        "[data]\n",
        &format!("[data]\n{data}\n"),
        1,
    );
    let cfg = write_config(dir, &format!("{out}.toml"), &text_);
    let o = run(&["train", s(&cfg), "--out", s(&dir.join(out))]);
    assert!(o.status.success(), "{}", text(&o));
    let metrics =
        serde_json::from_slice(&std::fs::read(dir.join(out).join("metrics.json")).unwrap()).unwrap();
    (text(&o), metrics)
}

#[test]
fn views_train_scores_count_images_and_tta_is_the_mean_over_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset_3x6(dir.path());
    // 36 images, 9 of them test: the 27 others get 3 views each.
    let (out, metrics) =
        train(dir.path(), &manifest, "augment = [\"hflip\", \"vflip\", \"rot180\"]", "plain");
    assert!(out.contains("117 extracted, 0 from cache"), "{out}");
    assert!(out.contains("36 images + 81 views (augment)"), "{out}");
    assert!(out.contains("scored rows: 9"), "the test part is 9 images, not their views: {out}");
    assert_eq!((metrics["n_test"].as_u64(), metrics["data"]["views"].as_u64()), (Some(9), Some(81)));
    let predictions = std::fs::read_to_string(dir.path().join("plain/predictions.csv")).unwrap();
    let rows = csv_rows(&predictions);
    assert_eq!(rows.len(), 9, "one row per test image");
    // With tta the test images get their views too (only those are new), still scored as 9 images.
    let (out, _) =
        train(dir.path(), &manifest, "augment = [\"hflip\", \"vflip\", \"rot180\"]\ntta = true", "tta");
    assert!(out.contains("27 extracted, 117 from cache"), "{out}");
    assert!(out.contains("scored rows: 9"), "{out}");

    // predict --tta: the mean over the image and its flipped and rotated copies, each predicted plainly.
    let file = manifest.parent().unwrap().join(&rows[0]["file"]);
    let img = image::open(&file).unwrap();
    let copies = dir.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let mut files = vec![file.clone()];
    for (name, t) in [("h", img.fliph()), ("v", img.flipv()), ("r", img.rotate180())] {
        let path = copies.join(format!("{name}.png"));
        t.save(&path).unwrap();
        files.push(path);
    }
    let predict = |args: &[&str]| {
        let o = run(&[&["predict", s(&dir.path().join("plain")), "--probabilities"], args].concat());
        assert!(o.status.success(), "{}", text(&o));
        csv_rows(&String::from_utf8_lossy(&o.stdout))
    };
    let each = predict(&files.iter().map(|f| s(f)).collect::<Vec<_>>());
    let averaged = predict(&[s(&file), "--tta"]);
    assert_eq!((each.len(), averaged.len()), (4, 1));
    let mut columns: Vec<&String> = averaged[0].keys().filter(|k| k.contains("_p_")).collect();
    columns.push(averaged[0].keys().find(|k| *k == "volume_fraction_pred").unwrap());
    assert!(columns.len() >= 4, "{columns:?}");
    for c in columns {
        let mean = each.iter().map(|r| number(r, c)).sum::<f64>() / 4.0;
        assert!((number(&averaged[0], c) - mean).abs() < 2e-6, "{c}: {} vs {mean}", averaged[0][c]);
    }
    // Without --tta, the plain row alone.
    let plain = predict(&[s(&file)]);
    assert_eq!(plain[0]["morphology_probability"], each[0]["morphology_probability"]);
}

/// An exact head's leave-one-out leaves an image out with its views. Under
/// a half turn two-point statistics do not change, so `rot180` views are
/// copies of their images: left out with them, each weight decay scores as
/// without the copies (a copy left in would predict its twin, and small
/// penalties would look best), and the same penalty is chosen.
#[test]
fn an_image_is_left_out_with_its_views() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset_3x6(dir.path());
    let two_point = "[extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n";
    let heads = crate::common::head("regression", "sigma_x");
    let training = "optimizer = \"lbfgs\"\nweight_decay = \"auto\"\ntest_fraction = 0.25\nseed = 3\n";
    let candidates = |data: &str, out: &str| {
        let text_ = config_text(&manifest, two_point, &heads, training).replacen(
            "[data]\n",
            &format!("[data]\n{data}\n"),
            1,
        );
        let cfg = write_config(dir.path(), &format!("{out}.toml"), &text_);
        let o = run(&["train", s(&cfg), "--out", s(&dir.path().join(out))]);
        assert!(o.status.success(), "{}", text(&o));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(out).join("metrics.json")).unwrap())
                .unwrap();
        let head = m["choices"]["heads"][0].clone();
        (head["weight_decay"].as_f64().unwrap(), head["candidates"].as_array().unwrap().clone(), m)
    };
    let (plain_wd, plain, _) = candidates("", "plain");
    let (views_wd, views, m) = candidates("augment = [\"rot180\"]", "views");
    assert_eq!(m["data"]["views"], 27);
    assert_eq!(plain.len(), views.len());
    for (a, b) in plain.iter().zip(&views) {
        let (a, b) = (a["score"].as_f64().unwrap(), b["score"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-4 * a.abs(), "leave-one-out MAE {a} without views, {b} with");
    }
    assert_eq!(plain_wd, views_wd);
    // --tta needs views to average.
    let image = manifest.parent().unwrap().join("images");
    let o = run(&["predict", s(&dir.path().join("plain")), s(&image), "--tta"]);
    assert!(!o.status.success() && text(&o).contains("has no augment"), "{}", text(&o));
}
