//! `furcate eval`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::run::{self, SavedRun};

use super::progress::Bars;

/// Arguments of `furcate eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder written by `furcate train`.
    pub run: PathBuf,
    /// Score on this labelled manifest instead of the run's test part (a
    /// cross-validated run, which has none, otherwise shows its out-of-fold scores).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `furcate eval`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let saved = SavedRun::open(&args.run)?;
    if args.data.is_none() {
        if let Some(oof) = saved.out_of_fold()? {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&oof)?);
            } else {
                print!("{}", oof.format());
            }
            return Ok(());
        }
    }
    let eval = saved.evaluate(args.data.as_deref(), &mut Bars::new(quiet))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&eval)?);
    } else {
        print!("{}", run::format_table(&eval));
    }
    Ok(())
}
