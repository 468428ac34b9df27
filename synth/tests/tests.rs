//! furcate-synth's integration tests: one harness with a module per file.

mod anisotropy;
mod config;
mod dataset;
mod determinism;
mod fraction;
