//! The plain-text summaries `furcate train` and `furcate eval` print.

use std::fmt::Write as _;

use super::choose;
use super::evaluate::Evaluation;

/// Plain text lines saying which taps each head reads and its weight decay
/// (with the number of candidates scored, when it was chosen).
pub fn format_choices(choices: &choose::Choices) -> String {
    let mut s = String::new();
    for h in &choices.heads {
        let reads = match &h.taps {
            Some(t) => t.join("+"),
            None => "trunk / all features".into(),
        };
        let how = if h.candidates.is_empty() {
            String::new()
        } else {
            format!(" (chosen from {} candidates)", h.candidates.len())
        };
        let _ = writeln!(s, "head {:<22} reads {:<24} weight decay {:e}{how}", h.head, reads, h.weight_decay);
    }
    if let Some(on) = &choices.scored_on {
        let _ = writeln!(s, "choices scored on the {on}");
    }
    s
}

/// What an exact match means for `eval`: which heads must all be right, and
/// which heads it leaves out (value heads without a `tolerance`).
pub fn exact_match_label(eval: &Evaluation) -> String {
    let covered = &eval.exact_match_heads;
    let left: Vec<&str> =
        eval.heads.iter().map(|h| h.name.as_str()).filter(|n| !covered.iter().any(|c| c == n)).collect();
    let mut s = format!("exact match ({} right", covered.join(" + "));
    if !left.is_empty() {
        let _ = write!(s, "; not counted, no tolerance: {}", left.join(", "));
    }
    s.push(')');
    s
}

/// A plain-text table of an evaluation, one line per head.
pub fn format_table(eval: &Evaluation) -> String {
    let mut s = format!("{:<24} {:<16} {:>12}  {}\n", "head", "type", "error rate", "other metrics");
    for h in &eval.heads {
        let err = h.score.error_rate.map(|e| format!("{:.4} %", e * 100.0)).unwrap_or_else(|| "-".into());
        let other: Vec<String> =
            h.score.metrics.headline().into_iter().map(|(k, x)| format!("{k} {x:.4}")).collect();
        let _ = writeln!(s, "{:<24} {:<16} {:>12}  {}", h.name, h.kind, err, other.join(", "));
    }
    if let Some(c) = eval.cumulative_error {
        let _ = writeln!(s, "cumulative error: {:.4} %", c * 100.0);
    }
    if let Some(x) = eval.exact_match_rate {
        let _ = writeln!(s, "{}: {:.4} %", exact_match_label(eval), x * 100.0);
    }
    for c in &eval.consistency {
        let rounded = c.rounded_error.map(|e| format!(", rounded value's error {:.4} %", e * 100.0));
        let _ = writeln!(
            s,
            "consistency {} -> {}: agreement {:.4} %{}",
            c.value,
            c.class,
            c.agreement * 100.0,
            rounded.unwrap_or_default()
        );
    }
    let _ = writeln!(s, "scored rows: {}", eval.n);
    if let Some(d) = &eval.data {
        let _ = writeln!(s, "{d}");
    }
    if let Some(t) = &eval.tiles {
        let _ = write!(s, "per tile (the scores above are per image):\n{}", format_table(t));
    }
    s
}
