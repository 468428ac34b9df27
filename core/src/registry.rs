//! The `type` names that can be used in TOML, as registered with typetag.

use serde::de::DeserializeOwned;

use crate::extractor::ExtractorConfig;
use crate::head::HeadConfig;

/// Registered extractor types (`type = "..."` in `[extractor]`), sorted.
pub fn extractor_types() -> Vec<String> {
    registered::<Box<dyn ExtractorConfig>>()
}

/// Registered built-in head types (`type = "..."` in `[[heads]]`), sorted.
pub fn head_types() -> Vec<String> {
    registered::<Box<dyn HeadConfig>>()
}

/// typetag keeps its registry private, but the error it gives for an unknown
/// tag lists every registered one: ask for a tag nobody registers and read it.
fn registered<T: DeserializeOwned>() -> Vec<String> {
    let probe = serde_json::json!({ "type": "\u{0}furcate-probe" });
    let Err(e) = serde_json::from_value::<T>(probe) else {
        return Vec::new();
    };
    let msg = e.to_string();
    let mut names: Vec<String> = msg
        .split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).map(str::to_string).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}
