//! `report.html`: one self-contained page (inline CSS, plots as `data:` URIs).

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::metrics::ClassMetrics;

/// A plot written under `plots/`, shown inline.
pub(super) struct Figure {
    pub title: String,
    /// The PNG's path relative to the run folder.
    pub rel_path: String,
    pub png: Vec<u8>,
}

/// One head's part of the report.
pub(super) struct HeadView<'a> {
    pub name: String,
    pub kind: Option<String>,
    pub column: Option<String>,
    pub error_rate: Option<&'a Value>,
    pub metrics: Option<&'a Map<String, Value>>,
    pub figures: Vec<Figure>,
}

/// Everything the page shows.
pub(super) struct Page<'a> {
    pub metrics: &'a Map<String, Value>,
    /// The taps and weight decays the run chose (`metrics.json`'s `choices`).
    pub choices: Option<&'a crate::run::choose::Choices>,
    /// The cross-validation (`metrics.json`'s `cross_validation`) and its plots.
    pub cross_validation: Option<(&'a crate::run::folds::CvSummary, &'a [Figure])>,
    pub total: Option<&'a Figure>,
    pub heads: &'a [HeadView<'a>],
    pub config: Option<&'a str>,
    pub notes: &'a [String],
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;\
padding:0 1em;color:#222}h1,h2,h3{font-weight:600}table{border-collapse:collapse;margin:.5em 0 1em}\
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f3f3f3}pre{background:#f7f7f7;border:1px solid #ddd;padding:1em;overflow-x:auto}\
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}img{max-width:100%;border:1px solid #eee}\
figcaption{font-size:.9em;color:#555}.note{color:#8a5300}code{font-size:.95em}";

/// Keys of metrics shown as percentages.
const RATES: [&str; 6] =
    ["accuracy", "error_rate", "cumulative_error", "exact_match_rate", "agreement", "rounded_error"];

/// Metrics shown first, in this order, with these names; any other key follows as it is.
const KNOWN: [(&str, &str); 8] = [
    ("accuracy", "accuracy"),
    ("error_rate", "error rate"),
    ("macro_f1", "macro F1"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("r2", "R²"),
    ("max_error", "max error"),
    ("n", "n"),
];

/// What a null `weights_sha256` means.
const NO_WEIGHTS: &str = "none (no weights file: randomly initialised)";

/// Metrics keys drawn or tabulated elsewhere.
const NOT_SCALAR: [&str; 3] = ["classes", "confusion_matrix", "per_class"];

/// The whole page.
pub(super) fn render(page: &Page) -> String {
    let mut out = String::with_capacity(1 << 16);
    let title = "furcate run report";
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    for note in page.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    summary(&mut out, page.metrics);
    overview(&mut out, page.heads);
    if let Some((cv, figures)) = page.cross_validation {
        cross_validation(&mut out, cv, figures);
    }
    if let Some(c) = page.choices {
        choices(&mut out, c);
    }
    if let Some(fig) = page.total {
        out.push_str("<h2>Training</h2>\n");
        figure(&mut out, fig);
    }
    for head in page.heads {
        head_section(&mut out, head);
    }
    extractor(&mut out, page.metrics);
    out.push_str("<h2>Configuration</h2>\n");
    match page.config {
        Some(text) => {
            let _ = writeln!(out, "<pre>{}</pre>", esc(text));
        }
        None => out.push_str("<p>config.toml not found in the run folder.</p>\n"),
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn summary(out: &mut String, m: &Map<String, Value>) {
    out.push_str("<h2>Summary</h2>\n<table>\n");
    let extractor_type = m.get("extractor").and_then(|e| e.get("type"));
    let covered: Option<Vec<String>> =
        m.get("exact_match_heads").and_then(|v| serde_json::from_value(v.clone()).ok());
    let exact_label = match covered {
        Some(heads) if !heads.is_empty() => format!("exact-match rate ({} all right)", heads.join(" + ")),
        _ => "exact-match rate (every head with a verdict right)".to_string(),
    };
    let rows: [(&str, &str, Option<&Value>); 9] = [
        ("furcate version", "furcate_version", m.get("furcate_version")),
        ("extractor", "type", extractor_type),
        ("best epoch", "best_epoch", m.get("best_epoch")),
        ("epochs run", "epochs_run", m.get("epochs_run")),
        ("training rows", "n_train", m.get("n_train")),
        ("validation rows", "n_val", m.get("n_val")),
        ("test rows", "n_test", m.get("n_test")),
        (
            "cumulative error (sum of the classification heads' error rates)",
            "cumulative_error",
            m.get("cumulative_error"),
        ),
        (exact_label.as_str(), "exact_match_rate", m.get("exact_match_rate")),
    ];
    for (label, key, value) in rows {
        if let Some(v) = value {
            row(out, label, key, v);
        }
    }
    for (key, v) in m {
        let listed = rows.iter().any(|r| r.1 == key)
            || matches!(
                key.as_str(),
                "heads"
                    | "extractor"
                    | "weights_sha256"
                    | "loss_weights"
                    | "consistency"
                    | "exact_match_heads"
                    | "warnings"
                    | "notes"
                    | "cross_validation"
                    | "choices"
            );
        if !listed {
            row(out, key, key, v);
        }
    }
    out.push_str("</table>\n");
    loss_weights(out, m);
    consistency(out, m);
}

/// Each head's weight in the objective at the end of training.
fn loss_weights(out: &mut String, m: &Map<String, Value>) {
    let Some(weights) = m.get("loss_weights").and_then(Value::as_object).filter(|w| !w.is_empty()) else {
        return;
    };
    let how = m.get("loss_weighting").and_then(Value::as_str).unwrap_or("fixed");
    let _ =
        writeln!(out, "<h3>Loss weights ({})</h3>\n<table>\n<tr><th>head</th><th>weight</th></tr>", esc(how));
    for (head, w) in weights {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(head),
            esc(&value_text("", w))
        );
    }
    out.push_str("</table>\n");
}

/// Agreement of value heads with the heads predicting their bins.
fn consistency(out: &mut String, m: &Map<String, Value>) {
    let Some(pairs) = m.get("consistency").and_then(Value::as_array).filter(|p| !p.is_empty()) else {
        return;
    };
    out.push_str(
        "<h3>Consistency of values and classes</h3>\n<p>Each predicted value rounded to the nearest class \
         centre, against the class head's prediction (agreement) and against the true class.</p>\n<table>\n\
         <tr><th>value head</th><th>class head</th><th>agreement</th><th>rounded value's error rate</th><th>n</th></tr>\n",
    );
    for p in pairs {
        let text = |k: &str| p.get(k).map_or_else(|| "n/a".to_string(), |v| value_text(k, v));
        let name = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&name("value")),
            esc(&name("class")),
            esc(&text("agreement")),
            esc(&text("rounded_error")),
            esc(&text("n")),
        );
    }
    out.push_str("</table>\n");
}

fn overview(out: &mut String, heads: &[HeadView]) {
    if heads.is_empty() {
        out.push_str("<p>No heads in metrics.json or history.csv.</p>\n");
        return;
    }
    out.push_str(
        "<h2>Heads</h2>\n<table>\n<tr><th>head</th><th>type</th><th>column</th><th>error rate</th></tr>\n",
    );
    for h in heads {
        let error = h.error_rate.or_else(|| h.metrics.and_then(|m| m.get("error_rate")));
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#head-{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            head_id(h),
            esc(&h.name),
            esc(h.kind.as_deref().unwrap_or("n/a")),
            esc(h.column.as_deref().unwrap_or("n/a")),
            esc(&error.map_or_else(|| "n/a".into(), |v| value_text("error_rate", v))),
        );
    }
    out.push_str("</table>\n");
}

fn head_section(out: &mut String, head: &HeadView) {
    let _ = writeln!(out, "<h2 id=\"head-{}\">Head <code>{}</code></h2>", head_id(head), esc(&head.name));
    let _ = writeln!(
        out,
        "<p>type <code>{}</code>, column <code>{}</code></p>",
        esc(head.kind.as_deref().unwrap_or("n/a")),
        esc(head.column.as_deref().unwrap_or("n/a"))
    );
    match head.metrics {
        Some(m) => {
            out.push_str("<table>\n");
            if let (Some(v), None) = (head.error_rate, m.get("error_rate")) {
                row(out, "error rate", "error_rate", v);
            }
            for (key, label) in KNOWN {
                if let Some(v) = m.get(key) {
                    row(out, label, key, v);
                }
            }
            for (key, v) in m {
                if !KNOWN.iter().any(|k| k.0 == key) && !NOT_SCALAR.contains(&key.as_str()) {
                    row(out, key, key, v);
                }
            }
            out.push_str("</table>\n");
            if let Some(per_class) = m.get("per_class").filter(|v| !v.is_null()) {
                // The same type the heads write (`metrics::ClassMetrics`), read back typed.
                match serde_json::from_value::<Vec<ClassMetrics>>(per_class.clone()) {
                    Ok(rows) => per_class_table(out, &rows),
                    Err(e) => {
                        let _ = writeln!(
                            out,
                            "<p class=\"note\">per_class of this head could not be read: {}</p>",
                            esc(&e.to_string())
                        );
                    }
                }
            }
        }
        None => out.push_str("<p>No metrics for this head in metrics.json.</p>\n"),
    }
    for fig in &head.figures {
        figure(out, fig);
    }
}

/// An id for the head's section, safe in HTML whatever the head's name (its bytes in hex).
fn head_id(head: &HeadView) -> String {
    head.name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Precision, recall, F1 and support of each class, in the head's class order.
fn per_class_table(out: &mut String, rows: &[ClassMetrics]) {
    out.push_str(
        "<h3>Per class</h3>\n<table class=\"per-class\">\n<tr><th>class</th><th>precision</th><th>recall</th>\
         <th>F1</th><th>support</th></tr>\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            esc(&r.class),
            number_text(r.precision),
            number_text(r.recall),
            number_text(r.f1),
            r.support
        );
    }
    out.push_str("</table>\n");
}

fn extractor(out: &mut String, m: &Map<String, Value>) {
    out.push_str("<h2>Extractor and weights</h2>\n<table>\n");
    match m.get("extractor") {
        Some(Value::Object(e)) => {
            for (key, v) in e {
                row(out, key, key, v);
            }
        }
        Some(other) => row(out, "extractor", "extractor", other),
        None => row(out, "extractor", "extractor", &Value::Null),
    }
    let sha = m.get("weights_sha256").unwrap_or(&Value::Null);
    let _ = writeln!(
        out,
        "<tr><th>weights SHA-256</th><td><code>{}</code></td></tr>",
        esc(&match sha {
            Value::Null => NO_WEIGHTS.to_owned(),
            v => value_text("weights_sha256", v),
        })
    );
    out.push_str("</table>\n");
}

fn figure(out: &mut String, fig: &Figure) {
    let _ = writeln!(
        out,
        "<figure><img alt=\"{alt}\" src=\"data:image/png;base64,{data}\"><figcaption>{alt} \
         (<code>{path}</code>)</figcaption></figure>",
        alt = esc(&fig.title),
        data = STANDARD.encode(&fig.png),
        path = esc(&fig.rel_path),
    );
}

fn row(out: &mut String, label: &str, key: &str, v: &Value) {
    let class = if v.is_number() { " class=\"num\"" } else { "" };
    let _ = writeln!(out, "<tr><th>{}</th><td{class}>{}</td></tr>", esc(label), esc(&value_text(key, v)));
}

/// How a JSON value reads in the report (not yet escaped). `key` picks
/// percentages for rates.
pub(super) fn value_text(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if RATES.contains(&key) => format!("{:.4} %", x * 100.0),
            Some(x) => number_text(x),
            None => n.to_string(),
        },
        other => {
            let s = other.to_string();
            if s.chars().count() > 300 {
                let mut cut: String = s.chars().take(299).collect();
                cut.push('…');
                cut
            } else {
                s
            }
        }
    }
}

/// Integers as they are, others with 4 decimals, scientific outside [1e-3, 1e6).
pub(super) fn number_text(x: f64) -> String {
    if !x.is_finite() {
        format!("{x}")
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if (1e-3..1e6).contains(&x.abs()) {
        format!("{x:.4}")
    } else {
        format!("{x:.4e}")
    }
}

/// The per-fold spread: per head and metric, the mean ± std over folds and
/// every fold's value.
fn cross_validation(out: &mut String, cv: &crate::run::folds::CvSummary, figures: &[Figure]) {
    let _ = writeln!(out, "<h2>Cross-validation ({} folds)</h2>\n<p>{}</p>", cv.k, esc(&cv.final_model));
    out.push_str("<table class=\"folds\">\n<tr><th>head</th><th>metric</th><th>mean ± std</th>");
    for f in &cv.folds {
        let _ = write!(out, "<th>fold {} ({} images)</th>", f.fold, f.n_test);
    }
    out.push_str("</tr>\n");
    for head in &cv.head_order {
        let Some(metrics) = cv.heads.get(head) else { continue };
        for (metric, ms) in metrics {
            let text = |v: f64| value_text(metric, &Value::from(v));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{} ± {}</td>",
                esc(head),
                esc(metric),
                esc(&text(ms.mean)),
                esc(&text(ms.std))
            );
            for f in &cv.folds {
                let v = f.heads.get(head).and_then(|m| m.get(metric)).map_or_else(String::new, |v| text(*v));
                let _ = write!(out, "<td class=\"num\">{}</td>", esc(&v));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
    for fig in figures {
        figure(out, fig);
    }
}

/// Escapes text for HTML content and attribute values.
/// Where each head branches off the network, its weight decay, and every
/// candidate that was scored.
fn choices(out: &mut String, c: &crate::run::choose::Choices) {
    out.push_str("<h2>Taps and weight decay</h2>\n");
    if let Some(layout) = &c.layout {
        let taps: Vec<String> = layout.taps.iter().map(|(n, w)| format!("{} ({w})", esc(n))).collect();
        let _ = writeln!(out, "<p>Features: {}.</p>", taps.join(", "));
    }
    if let Some(on) = &c.scored_on {
        let _ = writeln!(out, "<p>Choices scored on the {}.</p>", esc(on));
    }
    out.push_str("<table>\n<tr><th>head</th><th>reads</th><th>chosen</th><th>weight decay</th></tr>\n");
    for h in &c.heads {
        let reads = match &h.taps {
            Some(t) => t.join(" + "),
            None if c.layout.is_some() => "the trunk (or every tap)".into(),
            None => "every feature".into(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:e}</td></tr>",
            esc(&h.head),
            esc(&reads),
            if h.auto_taps { "by validation" } else { "configured" },
            h.weight_decay
        );
    }
    out.push_str("</table>\n");
    for h in c.heads.iter().filter(|h| !h.candidates.is_empty()) {
        let _ =
            writeln!(out, "<details><summary>{}: {} candidates</summary>", esc(&h.head), h.candidates.len());
        out.push_str("<table>\n<tr><th>taps</th><th>weight decay</th><th>score</th><th>loss</th></tr>\n");
        for k in &h.candidates {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{:e}</td><td>{} {:.6}</td><td>{:.6}</td></tr>",
                esc(k.taps.as_deref().unwrap_or("as configured")),
                k.weight_decay,
                esc(&k.measure),
                k.score,
                k.loss
            );
        }
        out.push_str("</table>\n</details>\n");
    }
}

pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
