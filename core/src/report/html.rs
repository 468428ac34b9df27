//! `report.html`: one self-contained page (inline CSS, plots as `data:` URIs).

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use crate::metrics::{ClassMetrics, HeadMetrics};
use crate::results::{Choices, CvSummary, RunResults};

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
    pub error_rate: Option<f64>,
    pub metrics: Option<&'a HeadMetrics>,
    pub figures: Vec<Figure>,
}

/// Everything the page shows.
pub(super) struct Page<'a> {
    pub results: &'a RunResults,
    /// The taps and weight decays the run chose (`metrics.json`'s `choices`).
    pub choices: Option<&'a Choices>,
    /// The cross-validation (`metrics.json`'s `cross_validation`) and its plots.
    pub cross_validation: Option<(&'a CvSummary, &'a [Figure])>,
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
    summary(&mut out, page.results);
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
    extractor(&mut out, page.results);
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

/// A typed value as the JSON the table cells format.
fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn summary(out: &mut String, r: &RunResults) {
    out.push_str("<h2>Summary</h2>\n<table>\n");
    let exact_label = match &r.exact_match_heads {
        heads if !heads.is_empty() => format!("exact-match rate ({} all right)", heads.join(" + ")),
        _ => "exact-match rate (every head with a verdict right)".to_string(),
    };
    let extractor_type = r.extractor.get("type").cloned().unwrap_or(Value::Null);
    let rows: Vec<(&str, &str, Value)> = vec![
        ("furcate version", "furcate_version", json(&r.furcate_version)),
        ("extractor", "type", extractor_type),
        ("best epoch", "best_epoch", json(&r.best_epoch)),
        ("epochs run", "epochs_run", json(&r.epochs_run)),
        ("stopped early", "stopped_early", json(&r.stopped_early)),
        ("training rows", "n_train", json(&r.n_train)),
        ("validation rows", "n_val", json(&r.n_val)),
        ("test rows", "n_test", json(&r.n_test)),
        (
            "cumulative error (sum of the classification heads' error rates)",
            "cumulative_error",
            json(&r.cumulative_error),
        ),
        (exact_label.as_str(), "exact_match_rate", json(&r.exact_match_rate)),
        ("optimizer", "optimizer", json(&r.optimizer)),
        ("standardised features", "standardise_features", json(&r.standardise_features)),
    ];
    for (label, key, value) in &rows {
        row(out, label, key, value);
    }
    if let Some(n) = r.n_out_of_fold {
        row(out, "out-of-fold rows", "n_out_of_fold", &Value::from(n));
    }
    if let Some(d) = &r.data {
        row(out, "data", "data", &Value::from(d.to_string()));
    }
    out.push_str("</table>\n");
    loss_weights(out, r);
    consistency(out, r);
}

/// Each head's weight in the objective at the end of training.
fn loss_weights(out: &mut String, r: &RunResults) {
    if r.loss_weights.is_empty() {
        return;
    }
    let how = serde_json::to_value(r.loss_weighting).ok();
    let how = how.as_ref().and_then(Value::as_str).unwrap_or("fixed");
    let _ =
        writeln!(out, "<h3>Loss weights ({})</h3>\n<table>\n<tr><th>head</th><th>weight</th></tr>", esc(how));
    for (head, w) in &r.loss_weights {
        let _ =
            writeln!(out, "<tr><td>{}</td><td class=\"num\">{}</td></tr>", esc(head), esc(&number_text(*w)));
    }
    out.push_str("</table>\n");
}

/// Agreement of value heads with the heads predicting their bins.
fn consistency(out: &mut String, r: &RunResults) {
    if r.consistency.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Consistency of values and classes</h3>\n<p>Each predicted value rounded to the nearest class \
         centre, against the class head's prediction (agreement) and against the true class.</p>\n<table>\n\
         <tr><th>value head</th><th>class head</th><th>agreement</th><th>rounded value's error rate</th><th>n</th></tr>\n",
    );
    for p in &r.consistency {
        let rate = |k: &str, v: Option<f64>| value_text(k, &v.map_or(Value::Null, Value::from));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&p.value),
            esc(&p.class),
            esc(&rate("agreement", Some(p.agreement))),
            esc(&rate("rounded_error", p.rounded_error)),
            p.n,
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
        let error = h.error_rate.or_else(|| h.metrics.and_then(|m| m.classes.as_ref()?.error_rate));
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#head-{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            head_id(h),
            esc(&h.name),
            esc(h.kind.as_deref().unwrap_or("n/a")),
            esc(h.column.as_deref().unwrap_or("n/a")),
            esc(&error.map_or_else(|| "n/a".into(), |v| value_text("error_rate", &Value::from(v)))),
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
        Some(metrics) => {
            // The typed figures as `metrics.json` names them, for the generic rows.
            let m = metrics.to_map();
            out.push_str("<table>\n");
            if let (Some(v), None) = (head.error_rate, m.get("error_rate")) {
                row(out, "error rate", "error_rate", &Value::from(v));
            }
            for (key, label) in KNOWN {
                if let Some(v) = m.get(key) {
                    row(out, label, key, v);
                }
            }
            for (key, v) in &m {
                if !KNOWN.iter().any(|k| k.0 == key) && !NOT_SCALAR.contains(&key.as_str()) {
                    row(out, key, key, v);
                }
            }
            out.push_str("</table>\n");
            if let Some(c) = metrics.classes.as_ref().filter(|c| !c.per_class.is_empty()) {
                per_class_table(out, &c.per_class);
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

fn extractor(out: &mut String, r: &RunResults) {
    out.push_str("<h2>Extractor and weights</h2>\n<table>\n");
    match &r.extractor {
        Value::Object(e) => {
            for (key, v) in e {
                row(out, key, key, v);
            }
        }
        other => row(out, "extractor", "extractor", other),
    }
    let _ = writeln!(
        out,
        "<tr><th>weights SHA-256</th><td><code>{}</code></td></tr>",
        esc(r.weights_sha256.as_deref().unwrap_or(NO_WEIGHTS))
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
fn cross_validation(out: &mut String, cv: &CvSummary, figures: &[Figure]) {
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
fn choices(out: &mut String, c: &Choices) {
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
