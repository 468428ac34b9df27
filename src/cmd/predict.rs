//! `furcate predict`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::fsutil;
use furcate_core::run::{PredictOptions, SavedRun};

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
    /// Tiled runs: after each image's row, one row per tile.
    #[arg(long)]
    pub tiles: bool,
    /// The images' micrometres per pixel (needed by a run with `data.pixel_size`).
    #[arg(long)]
    pub pixel_size: Option<f64>,
}

/// Runs `furcate predict`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let saved = SavedRun::open(&args.run)?;
    let opts =
        PredictOptions { tiles: args.tiles, pixel_size: args.pixel_size, probabilities: args.probabilities };
    let predicted = saved.predict_table(&args.images, &opts, &mut Bars::new(quiet || args.json))?;
    let text = if args.json {
        serde_json::to_string_pretty(&predicted.table.rows(&predicted.images))? + "\n"
    } else {
        predicted.csv
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
