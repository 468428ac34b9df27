//! The integration tests of the `furcate` binary: one harness (one binary,
//! one link against libtorch) with a module per file; shared fixtures in
//! [`common`].

mod common;

mod augment;
mod cli;
mod docs;
mod experiment;
mod few_labels;
mod plugins;
mod slurm;
