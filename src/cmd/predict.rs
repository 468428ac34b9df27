//! `furcate predict`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::fsutil;
use furcate_core::run::output::predictions_csv_with;
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
    /// Add every class's probability as columns `<head>_p_<class>`.
    #[arg(long)]
    pub probabilities: bool,
    /// Print one JSON document (a list of images with each head's
    /// prediction and class probabilities) instead of CSV.
    #[arg(long)]
    pub json: bool,
}

/// Runs `furcate predict`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let saved = SavedRun::open(&args.run)?;
    let (set, table) = saved.predict_table(&args.images, &mut Bars::new(quiet || args.json))?;
    let text = if args.json {
        serde_json::to_string_pretty(&table.rows(&set))? + "\n"
    } else {
        let extra = if args.probabilities { table.probability_columns() } else { Vec::new() };
        let split = vec!["predict".to_string(); set.len()];
        predictions_csv_with(&saved.config.config, &set, &split, &table.predictions, &extra)?
    };
    match &args.out {
        Some(path) => {
            fsutil::write_atomic(path, text.as_bytes())?;
            if !quiet {
                eprintln!("wrote {}", path.display());
            }
        }
        None => print!("{text}"),
    }
    Ok(())
}
