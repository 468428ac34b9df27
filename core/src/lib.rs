//! # furcate-core
//!
//! The heart of furcate: a frozen [`extractor::FeatureExtractor`] turns each
//! micrograph into a feature vector once; small [`head::PropertyHead`]s, one
//! per labelled property, are trained on those features, with or without a
//! shared trunk between them.
//!
//! Extractors and heads are chosen in TOML by their `type`, through typetag
//! ([`extractor::ExtractorConfig`], [`head::HeadConfig`]).
#![deny(missing_docs)]

// The crate by its own name, so that paths in macro-made serde attributes
// ([`head_config!`]) read the same here and in the crates that use them.
extern crate self as furcate_core;

pub mod check;
pub mod config;
pub mod data;
pub mod error;
pub mod experiment;
pub mod extractor;
pub mod features;
pub mod fsutil;
pub mod head;
pub mod layers;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod progress;
pub mod registry;
pub mod report;
pub mod results;
pub mod run;
pub mod runtime;
pub mod shard;
pub mod slurm;
pub mod train;
pub(crate) mod values;
pub mod weights;

pub use error::{Error, Result};
pub use extractor::{BuildContext, ExtractorConfig, FeatureExtractor, InputSpec};
pub use head::{HeadConfig, HeadScore, HeadState, Prediction, PropertyHead, Targets};

/// The version of furcate-core.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
