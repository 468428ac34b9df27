//! One module per subcommand.

pub mod cache;
pub mod check;
pub mod demo;
pub mod eval;
pub mod experiment;
pub mod extract;
pub mod generate;
pub mod info;
pub mod predict;
pub mod progress;
pub mod slurm;
pub mod suggest;
pub mod train;
