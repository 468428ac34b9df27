//! `furcate check`.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Arguments of `furcate check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run configuration (TOML).
    pub config: PathBuf,
    /// Print one JSON document instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Runs `furcate check`: exits 0 when training would start.
pub fn run(args: &Args) -> Result<()> {
    let report = furcate_core::check::check(&args.config);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.format());
    }
    if !report.ok {
        bail!("{}: {} problem(s) would stop training", args.config.display(), report.errors.len());
    }
    Ok(())
}
