//! `furcate predict`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::fsutil;
use furcate_core::run::SavedRun;

use super::progress::Bars;

/// Arguments of `furcate predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder written by `furcate train`.
    pub run: PathBuf,
    /// Images, or folders of images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Write the CSV here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `furcate predict`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let saved = SavedRun::open(&args.run)?;
    let csv = saved.predict(&args.images, &mut Bars::new(quiet))?;
    match &args.out {
        Some(path) => {
            fsutil::write_atomic(path, csv.as_bytes())?;
            if !quiet {
                eprintln!("wrote {}", path.display());
            }
        }
        None => print!("{csv}"),
    }
    Ok(())
}
