//! The run-folder report: plots as PNG and a self-contained report.html.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use furcate_core::report::write_report;
use serde_json::{json, Value};

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
/// The validation curve's colour in the loss plots.
const VAL_ORANGE: [u8; 3] = [255, 127, 14];
const CONFIG: &str = "[data]\nmanifest = \"labels.csv\"\nnote = \"<script>alert('x')</script> & more\"\n";

/// Writes `history.csv` for `heads`, with losses falling as 1/epoch; empty val cells without validation.
fn write_history(dir: &Path, heads: &[&str], epochs: usize, with_val: bool) -> Result<()> {
    let mut text = String::from("epoch,train_total,val_total");
    for h in heads {
        text.push_str(&format!(",train_{h}"));
    }
    for h in heads {
        text.push_str(&format!(",val_{h}"));
    }
    text.push('\n');
    for e in 1..=epochs {
        let loss = 2.0 / e as f64;
        let val = |x: f64| if with_val { format!("{x}") } else { String::new() };
        text.push_str(&format!("{e},{},{}", loss * heads.len() as f64, val(1.1 * loss * heads.len() as f64)));
        for _ in heads {
            text.push_str(&format!(",{loss}"));
        }
        for _ in heads {
            text.push_str(&format!(",{}", val(1.1 * loss)));
        }
        text.push('\n');
    }
    fs::write(dir.join("history.csv"), text)?;
    Ok(())
}

/// A classification head's metrics as the head writes them (the typed
/// `ClassificationMetrics`), for the labels behind `matrix` (rows = true).
fn classification_metrics(classes: &[&str], matrix: &[Vec<u64>]) -> Value {
    let mut pairs = Vec::new();
    for (t, row) in matrix.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            pairs.extend(std::iter::repeat_n((classes[t], classes[p]), count as usize));
        }
    }
    let names: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    serde_json::to_value(furcate_core::metrics::classification(&names, &pairs)).unwrap()
}

/// A run folder: `morphology` (classification, 3 classes) and `fraction` (regression).
fn full_run(dir: &Path) -> Result<Value> {
    let heads = ["morphology", "fraction"];
    write_history(dir, &heads, 300, true)?;
    let morph = classification_metrics(
        &["columnar", "equiaxed", "lamellar"],
        &[vec![10, 1, 0], vec![2, 9, 0], vec![0, 0, 12]],
    );
    let metrics = json!({
        "furcate_version": "0.1.0",
        "extractor": {"type": "resnet50", "input_size": 128, "weights": "cache:resnet50.safetensors"},
        "weights_sha256": "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
        "best_epoch": 231,
        "epochs_run": 300,
        "n_train": 120, "n_val": 20, "n_test": 34,
        "cumulative_error": morph["error_rate"],
        "exact_match_rate": 0.8235,
        "heads": {
            "morphology": {"type": "classification", "column": "morph", "error_rate": morph["error_rate"], "metrics": morph},
            "fraction": {"type": "regression", "column": "vf", "error_rate": null,
                         "metrics": {"mae": 0.0125, "rmse": 0.0175, "r2": 0.9625, "max_error": 0.0625, "n": 34}},
        },
    });
    fs::write(dir.join("metrics.json"), serde_json::to_string_pretty(&metrics)?)?;
    let mut preds = String::from(
        "file,split,morphology_true,morphology_pred,morphology_probability,fraction_true,fraction_pred\n",
    );
    for i in 0..34 {
        let t = 0.05 + 0.01 * i as f64;
        preds.push_str(&format!("img_{i}.png,test,columnar,columnar,0.9,{t},{}\n", t + 0.005));
    }
    preds.push_str("\"odd, name.png\",test,lamellar,lamellar,0.8,,0.3\n");
    preds.push_str("img_train.png,train,lamellar,lamellar,0.8,0.4,0.41\n");
    fs::write(dir.join("predictions.csv"), preds)?;
    fs::write(dir.join("config.toml"), CONFIG)?;
    Ok(metrics)
}

/// The PNG's width, height and RGB(A) pixels, after checking its signature.
fn decode_png(path: &Path) -> Result<(u32, u32, Vec<[u8; 3]>)> {
    let bytes = fs::read(path)?;
    anyhow::ensure!(bytes.starts_with(&PNG_SIGNATURE), "{} is not a PNG", path.display());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf)?;
    let step = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(step).map(|p| [p[0], p[1], p[2]]).collect();
    Ok((info.width, info.height, pixels))
}

fn plot_names(plots: &[PathBuf]) -> Vec<String> {
    plots.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// Every plot is a decodable PNG with something drawn, and is inlined in the page byte for byte.
fn check_plots_inlined(plots: &[PathBuf], html: &str) -> Result<()> {
    assert_eq!(html.matches("data:image/png;base64,").count(), plots.len());
    for p in plots {
        let (w, h, pixels) = decode_png(p)?;
        assert!(w >= 300 && h >= 150, "{}: {w}x{h}", p.display());
        assert_eq!(pixels.len(), (w * h) as usize);
        assert!(pixels.iter().any(|px| *px != [255, 255, 255]), "{} is blank", p.display());
        let encoded = STANDARD.encode(fs::read(p)?);
        assert!(html.contains(&format!("data:image/png;base64,{encoded}\"")), "{} not inlined", p.display());
    }
    Ok(())
}

fn heads_per_class(metrics: &Value, head: &str) -> Vec<Value> {
    metrics["heads"][head]["metrics"]["per_class"].as_array().unwrap().clone()
}

fn pct(v: &Value) -> String {
    format!("{:.4} %", v.as_f64().unwrap() * 100.0)
}

#[test]
fn report_of_a_classification_and_a_regression_head() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let metrics = full_run(dir)?;
    let files = write_report(dir)?;

    assert_eq!(files.html, dir.join("report.html"));
    assert_eq!(
        plot_names(&files.plots),
        [
            "loss_total.png",
            "loss_morphology.png",
            "confusion_morphology.png",
            "loss_fraction.png",
            "pred_vs_true_fraction.png"
        ]
    );
    for p in &files.plots {
        assert_eq!(p.parent(), Some(dir.join("plots").as_path()));
    }
    let html = fs::read_to_string(&files.html)?;
    check_plots_inlined(&files.plots, &html)?;
    // With a validation column, the loss plots carry the validation colour.
    let (_, _, pixels) = decode_png(&dir.join("plots/loss_morphology.png"))?;
    assert!(pixels.contains(&VAL_ORANGE));

    for name in ["morphology", "fraction", "columnar", "equiaxed", "lamellar", "resnet50"] {
        assert!(html.contains(name), "{name} missing");
    }
    // Every section: per-class table (one row per class, with its recall),
    // confusion matrix, parity plot with MAE and R².
    assert_eq!(html.matches("<h3>Per class</h3>").count(), 1, "per-class table missing");
    for c in heads_per_class(&metrics, "morphology") {
        let p = c["precision"].as_f64().unwrap();
        let p = if p.fract() == 0.0 { format!("{p:.0}") } else { format!("{p:.4}") };
        let row = format!("<tr><td>{}</td><td class=\"num\">{p}</td>", c["class"].as_str().unwrap());
        assert!(html.contains(&row), "per-class row of {c} missing");
    }
    assert!(html.contains("morphology: confusion matrix"));
    assert!(html.contains("fraction: predicted vs true (test, MAE 0.005, R² "), "{html}");
    let heads = &metrics["heads"];
    assert!(html.contains(&pct(&heads["morphology"]["metrics"]["accuracy"])));
    assert!(html.contains(&pct(&heads["morphology"]["error_rate"])));
    assert!(html.contains(&pct(&metrics["cumulative_error"])));
    assert!(html.contains(&pct(&metrics["exact_match_rate"])));
    for key in ["mae", "rmse", "r2", "max_error"] {
        let v = heads["fraction"]["metrics"][key].as_f64().unwrap();
        assert!(html.contains(&format!("{v:.4}")), "{key} missing");
    }
    assert!(html.contains(metrics["weights_sha256"].as_str().unwrap()));
    assert!(html.contains(">231<"), "best epoch missing");
    // The config is shown, escaped, and the page loads nothing from outside.
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("<link"));
    Ok(())
}

#[test]
fn report_without_validation_with_unknown_and_degenerate_heads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let heads = ["phase", "size", "grain<rank>"];
    write_history(dir, &heads, 12, false)?;
    let metrics = json!({
        "weights_sha256": null,
        "cumulative_error": 0.0,
        "exact_match_rate": null,
        "heads": {
            "phase": {"type": "classification", "error_rate": 0.0,
                      "metrics": classification_metrics(&["ferrite"], &[vec![7]])},
            "size": {"type": "regression", "metrics": {"mae": null, "rmse": null, "r2": null, "n": 0}},
            "grain<rank>": {"type": "ordinal-ish", "metrics": {"mean_rank_error": 0.75, "note": "a<b", "spread": [1, 2]}},
        },
    });
    fs::write(dir.join("metrics.json"), metrics.to_string())?;
    // Only training rows: the regression head has no test rows to plot.
    fs::write(
        dir.join("predictions.csv"),
        "file,split,phase_true,phase_pred,size_true,size_pred\na.png,train,ferrite,ferrite,1.5,1.4\n",
    )?;
    fs::write(dir.join("config.toml"), CONFIG)?;

    let files = write_report(dir)?;
    assert_eq!(
        plot_names(&files.plots),
        [
            "loss_total.png",
            "loss_phase.png",
            "confusion_phase.png",
            "loss_size.png",
            "pred_vs_true_size.png",
            "loss_grain_rank_.png"
        ]
    );
    let html = fs::read_to_string(&files.html)?;
    check_plots_inlined(&files.plots, &html)?;
    let (_, _, pixels) = decode_png(&dir.join("plots/loss_phase.png"))?;
    assert!(!pixels.contains(&VAL_ORANGE), "no validation curve expected");

    assert!(html.contains("grain&lt;rank&gt;") && !html.contains("grain<rank>"));
    assert!(html.contains("ordinal-ish") && html.contains("mean_rank_error") && html.contains("0.7500"));
    assert!(html.contains("a&lt;b") && html.contains("[1,2]"));
    assert!(html.contains("n/a"), "null metrics shown as n/a");
    assert!(html.contains("ferrite"));
    assert!(html.contains("&lt;script&gt;"));
    Ok(())
}

#[test]
fn heads_from_metrics_alone_and_missing_optional_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let metrics = json!({"heads": {"fraction": {"type": "regression", "metrics": {"mae": 0.5}}}});
    fs::write(dir.join("metrics.json"), metrics.to_string())?;
    let files = write_report(dir)?;
    assert_eq!(plot_names(&files.plots), ["pred_vs_true_fraction.png"]);
    let html = fs::read_to_string(&files.html)?;
    check_plots_inlined(&files.plots, &html)?;
    for missing in ["history.csv not found", "predictions.csv not found", "config.toml not found"] {
        assert!(html.contains(missing), "{missing}");
    }
    Ok(())
}

#[test]
fn learned_loss_weights_and_consistency_are_tabled() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let metrics = json!({
        "loss_weighting": "uncertainty",
        "loss_weights": {"fraction": 2.5, "bin": 0.125},
        "consistency": [{"value": "fraction", "class": "bin", "agreement": 0.75, "rounded_error": 0.25, "n": 8}],
        "heads": {"fraction": {"type": "regression", "metrics": {"mae": 0.5}}},
    });
    fs::write(dir.join("metrics.json"), metrics.to_string())?;
    let html = fs::read_to_string(write_report(dir)?.html)?;
    assert!(html.contains("Loss weights (uncertainty)"), "{html}");
    assert!(html.contains("<td>bin</td><td class=\"num\">0.1250</td>"), "{html}");
    assert!(html.contains("Consistency of values and classes"), "{html}");
    assert!(html.contains("75.0000 %") && html.contains("25.0000 %"), "{html}");
    // Shown in their own tables, not as raw JSON in the summary.
    assert!(!html.contains("{&quot;") && !html.contains("[{"), "{html}");
    Ok(())
}

#[test]
fn missing_metrics_json_is_an_error_naming_it() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    write_history(tmp.path(), &["a"], 3, true)?;
    let err = write_report(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("metrics.json"), "{err}");
    assert!(!tmp.path().join("report.html").exists());
    Ok(())
}

#[test]
fn malformed_inputs_are_errors_naming_file_and_field() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    full_run(dir)?;

    fs::write(dir.join("metrics.json"), "[1, 2]")?;
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("metrics.json"), "{err}");

    let bad = json!({"heads": {"morph": {"type": "classification",
        "metrics": {"classes": ["a", "b"], "confusion_matrix": [[1, 2], [3]]}}}});
    fs::write(dir.join("metrics.json"), bad.to_string())?;
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("metrics.json") && err.contains("heads.morph.metrics.confusion_matrix"), "{err}");

    let bad = json!({"heads": {"morph": {"type": "classification",
        "metrics": {"classes": ["a"], "confusion_matrix": [[1, 2], [3, 4]]}}}});
    fs::write(dir.join("metrics.json"), bad.to_string())?;
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("heads.morph.metrics.classes"), "{err}");

    fs::write(dir.join("metrics.json"), "{}")?;
    fs::write(dir.join("history.csv"), "epoch,train_total,val_total\n1,0.5,\n2,oops,\n")?;
    let err = write_report(dir).unwrap_err().to_string();
    assert!(err.contains("history.csv") && err.contains("line 3") && err.contains("train_total"), "{err}");
    Ok(())
}
