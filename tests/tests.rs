//! The integration tests of the `furcate` binary: one harness (one binary,
//! one link against libtorch) with a module per file; shared fixtures in
//! [`common`].

mod common;

mod cli;
mod experiment;
mod plugins;
mod slurm;
mod suggest;
