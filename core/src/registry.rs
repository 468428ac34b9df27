//! The `type` names that can be used in TOML.
//!
//! Each `#[typetag::serde(name = "...")]` impl of [`ExtractorConfig`] or
//! [`HeadConfig`] registers its name beside it with [`register_type!`](crate::register_type)
//! (typetag keeps its own registry private); a test checks that the two
//! agree, so a type cannot be usable yet missing from `furcate info`.

use crate::extractor::ExtractorConfig;
use crate::head::HeadConfig;

#[doc(hidden)]
pub use inventory;

/// What a registered `type` name builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An [`ExtractorConfig`] (`[extractor] type`).
    Extractor,
    /// A [`HeadConfig`] (`[[heads]] type`).
    Head,
}

/// One registered `type` name, submitted by [`register_type!`](crate::register_type).
#[derive(Debug)]
pub struct Registered {
    /// What it builds.
    pub kind: Kind,
    /// The `type` value in TOML.
    pub name: &'static str,
}

inventory::collect!(Registered);

/// Registers a `type` name for [`extractor_types`] / [`head_types`]; put it
/// beside the `#[typetag::serde(name = "...")]` impl, with the same name.
///
/// ```
/// // Beside `#[typetag::serde(name = "classification")] impl HeadConfig for ...`:
/// // furcate_core::register_type!(Head, "classification");
/// assert!(furcate_core::registry::head_types().iter().any(|t| t == "classification"));
/// ```
#[macro_export]
macro_rules! register_type {
    ($kind:ident, $name:literal) => {
        $crate::registry::inventory::submit! {
            $crate::registry::Registered { kind: $crate::registry::Kind::$kind, name: $name }
        }
    };
}

/// The names registered for `kind`, sorted.
fn names(kind: Kind) -> Vec<String> {
    let mut names: Vec<String> = inventory::iter::<Registered>
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.name.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Registered extractor types (`type = "..."` in `[extractor]`), sorted.
pub fn extractor_types() -> Vec<String> {
    names(Kind::Extractor)
}

/// Registered built-in head types (`type = "..."` in `[[heads]]`), sorted.
pub fn head_types() -> Vec<String> {
    names(Kind::Head)
}

/// Whether `name` is a `type` typetag reads as a [`HeadConfig`] (an unknown
/// one fails with "unknown variant"; a known one with a missing field).
pub fn typetag_knows_head(name: &str) -> bool {
    let probe = serde_json::json!({ "type": name });
    match serde_json::from_value::<Box<dyn HeadConfig>>(probe) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown variant"),
    }
}

/// [`typetag_knows_head`] for [`ExtractorConfig`].
pub fn typetag_knows_extractor(name: &str) -> bool {
    let probe = serde_json::json!({ "type": name });
    match serde_json::from_value::<Box<dyn ExtractorConfig>>(probe) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown variant"),
    }
}
