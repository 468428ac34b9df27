//! The experiment file made into points: the base configuration with the
//! overrides merged in, and one run configuration per combination of the
//! sweep's lists.

use std::path::Path;

use super::{ExperimentConfig, Point, BASE_TAPS};
use crate::{Error, Result};

pub(super) use crate::fsutil::parent_dir as parent;

/// Merges `over` into `base`, table by table; other values replace.
pub(super) fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `0.1` -> `0.10`, `0.95` -> `0.95`: at least two decimals, no trailing noise.
pub(super) fn fraction(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0');
    if s.len() - s.find('.').map_or(s.len(), |i| i + 1) < 2 {
        format!("{v:.2}")
    } else {
        s.to_string()
    }
}

/// Every combination of the sweep's lists, as points.
pub(super) fn points(path: &Path, cfg: &ExperimentConfig, base: &toml::Table) -> Result<Vec<Point>> {
    let s = &cfg.sweep;
    let training = base.get("training").and_then(toml::Value::as_table);
    let base_tf =
        training.and_then(|t| t.get("test_fraction")).and_then(toml::Value::as_float).unwrap_or(0.2);
    let base_seed =
        training.and_then(|t| t.get("seed")).and_then(toml::Value::as_integer).unwrap_or(0) as u64;
    let base_heads: Vec<toml::Table> = base
        .get("heads")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(|h| h.as_table().cloned()).collect())
        .unwrap_or_default();
    let extractors: Vec<Option<&toml::Table>> =
        if s.extractors.is_empty() { vec![None] } else { s.extractors.iter().map(Some).collect() };
    let type_of = |t: Option<&toml::Table>| {
        t.or_else(|| base.get("extractor").and_then(toml::Value::as_table))
            .and_then(|t| t.get("type"))
            .and_then(toml::Value::as_str)
            .unwrap_or("extractor")
            .to_string()
    };
    let types: Vec<String> = extractors.iter().map(|t| type_of(*t)).collect();
    let extractor_labels: Vec<String> = types
        .iter()
        .enumerate()
        .map(
            |(i, t)| {
                if types.iter().filter(|u| *u == t).count() > 1 {
                    format!("{t}-{i}")
                } else {
                    t.clone()
                }
            },
        )
        .collect();
    let trunks: Vec<Option<&Vec<i64>>> =
        if s.trunks.is_empty() { vec![None] } else { s.trunks.iter().map(Some).collect() };
    let head_sets: Vec<Option<&Vec<String>>> =
        if s.head_sets.is_empty() { vec![None] } else { s.head_sets.iter().map(Some).collect() };
    for set in s.head_sets.iter() {
        for name in set {
            if !base_heads.iter().any(|h| head_name(h) == *name) {
                return Err(Error::config(
                    path,
                    format!(
                        "sweep.head_sets names `{name}`, which the base config does not declare (heads: {})",
                        base_heads.iter().map(head_name).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    for (i, t) in s.taps.iter().enumerate() {
        if t.is_empty() {
            return Err(Error::config(path, format!("sweep.taps[{i}] is empty; name at least one tap")));
        }
        if let Some(j) = s.taps[..i].iter().position(|u| u == t) {
            return Err(Error::config(
                path,
                format!(
                    "sweep.taps[{i}] repeats sweep.taps[{j}] ({}): its points would share run folders",
                    t.join("+")
                ),
            ));
        }
    }
    let taps: Vec<Option<&Vec<String>>> =
        if s.taps.is_empty() { vec![None] } else { s.taps.iter().map(Some).collect() };
    let tfs = if s.test_fractions.is_empty() { vec![base_tf] } else { s.test_fractions.clone() };
    let base_folds =
        training.and_then(|t| t.get("folds")).and_then(toml::Value::as_integer).unwrap_or(0) as usize;
    let fold_values = if s.folds.is_empty() { vec![base_folds] } else { s.folds.clone() };
    if let Some(k) = s.folds.iter().find(|k| **k == 1) {
        return Err(Error::config(path, format!("sweep.folds = {k}: use 0 (one split) or at least 2 folds")));
    }
    let seeds = if s.seeds.is_empty() { vec![base_seed] } else { s.seeds.clone() };
    let mut out = Vec::new();
    for (ext, ext_label) in extractors.iter().zip(&extractor_labels) {
        for heads in &head_sets {
            for trunk in &trunks {
                for tap in &taps {
                    for &tf in &tfs {
                        for &folds in &fold_values {
                            for &seed in &seeds {
                                let mut c = base.clone();
                                if let Some(e) = ext {
                                    c.insert("extractor".into(), toml::Value::Table((*e).clone()));
                                }
                                let mut kept: Vec<toml::Table> = match heads {
                                    Some(names) => names
                                        .iter()
                                        .filter_map(|n| {
                                            base_heads.iter().find(|h| head_name(h) == *n).cloned()
                                        })
                                        .collect(),
                                    None => base_heads.clone(),
                                };
                                if let Some(t) = tap {
                                    for h in &mut kept {
                                        let names =
                                            t.iter().map(|n| toml::Value::String(n.clone())).collect();
                                        h.insert("taps".into(), toml::Value::Array(names));
                                    }
                                }
                                let head_label = kept.iter().map(head_name).collect::<Vec<_>>().join("+");
                                keep_consistency_of(&mut c, &kept);
                                c.insert(
                                    "heads".into(),
                                    toml::Value::Array(kept.into_iter().map(toml::Value::Table).collect()),
                                );
                                set_trunk(&mut c, *trunk);
                                let trunk_label = match c
                                    .get("trunk")
                                    .and_then(|t| t.get("hidden"))
                                    .and_then(toml::Value::as_array)
                                {
                                    Some(h) if !h.is_empty() => {
                                        h.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x")
                                    }
                                    _ => "none".into(),
                                };
                                let t = c
                                    .entry("training")
                                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                                if let Some(t) = t.as_table_mut() {
                                    t.insert("test_fraction".into(), tf.into());
                                    t.insert("seed".into(), (seed as i64).into());
                                    if folds > 0 {
                                        t.insert("folds".into(), (folds as i64).into());
                                    } else {
                                        t.remove("folds");
                                    }
                                }
                                let taps_label = tap.map_or_else(|| BASE_TAPS.to_string(), |t| t.join("+"));
                                let taps_part =
                                    if tap.is_some() { format!("_taps-{taps_label}") } else { String::new() };
                                let folds_part =
                                    if s.folds.is_empty() { String::new() } else { format!("_folds{folds}") };
                                let name = format!(
                                "{ext_label}_{head_label}_trunk-{trunk_label}{taps_part}_test{}{folds_part}_seed{seed}",
                                fraction(tf)
                            );
                                let config =
                                    toml::to_string(&c).map_err(|e| Error::config(path, e.to_string()))?;
                                out.push(Point {
                                    name,
                                    extractor: ext_label.clone(),
                                    heads: head_label,
                                    trunk: trunk_label,
                                    taps: taps_label,
                                    test_fraction: tf,
                                    seed,
                                    folds,
                                    config,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Applies a `sweep.trunks` value: `[]` removes the trunk, sizes set `trunk.hidden`.
pub(super) fn set_trunk(c: &mut toml::Table, trunk: Option<&Vec<i64>>) {
    match trunk {
        Some(h) if h.is_empty() => {
            c.remove("trunk");
        }
        Some(h) => {
            let mut t = c.get("trunk").and_then(toml::Value::as_table).cloned().unwrap_or_default();
            t.insert("hidden".into(), toml::Value::Array(h.iter().map(|&v| v.into()).collect()));
            c.insert("trunk".into(), toml::Value::Table(t));
        }
        None => {}
    }
}

/// A `[[heads]]` table's name.
pub(super) fn head_name(h: &toml::Table) -> String {
    h.get("name").and_then(toml::Value::as_str).unwrap_or("").to_string()
}

/// Removes the `[[consistency]]` pairs that name a head not in `kept`.
pub(super) fn keep_consistency_of(config: &mut toml::Table, kept: &[toml::Table]) {
    let Some(toml::Value::Array(pairs)) = config.get_mut("consistency") else { return };
    let has = |pair: &toml::Value, key: &str| {
        pair.get(key).and_then(toml::Value::as_str).is_some_and(|n| kept.iter().any(|h| head_name(h) == n))
    };
    pairs.retain(|p| has(p, "value") && has(p, "class"));
    if pairs.is_empty() {
        config.remove("consistency");
    }
}
