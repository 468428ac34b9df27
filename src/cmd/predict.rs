//! `furcate predict`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use furcate_core::data::Dataset;
use furcate_core::fsutil;
use furcate_core::run::{PredictOptions, SavedRun};
use furcate_core::shard::{self, Shard};

use super::progress::Bars;

/// Arguments of `furcate predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder written by `furcate train`.
    #[arg(required_unless_present = "merge")]
    pub run: Option<PathBuf>,
    /// Images, or folders of images.
    #[arg(required_unless_present = "merge")]
    pub images: Vec<PathBuf>,
    /// Predict only shard I of N (from 0) of the images, in their order
    /// (folders' files sorted); or `slurm`: the Slurm array task's. The CSV
    /// goes to `STEM.part-I-of-N.csv` beside `--out` (default `predictions.csv`).
    #[arg(long, value_name = "I/N|slurm", conflicts_with = "json")]
    pub shard: Option<String>,
    /// Join the CSV parts that `--shard` wrote (every part of one N, any
    /// order) into one file, in the images' order, instead of predicting.
    #[arg(long, num_args = 1.., value_name = "PART", conflicts_with_all = ["run", "shard", "json"])]
    pub merge: Vec<PathBuf>,
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
    /// Test-time augmentation: average each image's prediction over the
    /// views the run's `[data] augment` makes (mean probability of a class
    /// head, mean value of a value head). Always on for a run trained with
    /// `[data] tta = true`.
    #[arg(long)]
    pub tta: bool,
}

/// Runs `furcate predict`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if !args.merge.is_empty() {
        return write(&args.out, &shard::merge_parts(&args.merge)?, quiet);
    }
    let run = args.run.as_deref().expect("clap requires RUN without --merge");
    let Some(shard) = args.shard.as_deref().map(|s| Shard::parse(s, "--shard")).transpose()? else {
        return write(&args.out, &predict(args, run, &args.images, quiet)?, quiet);
    };
    // The shard's files, in the order the whole list has them (folders expanded and sorted).
    let set = shard.select(&Dataset::from_paths(&args.images)?);
    let out = shard::part_path(args.out.as_deref().unwrap_or(Path::new("predictions.csv")), shard);
    // A shard with no images writes an empty part, which --merge skips.
    let text = if set.is_empty() { String::new() } else { predict(args, run, &set.files, quiet)? };
    write(&Some(out), &text, quiet)
}

/// The predictions of `images` as the CSV or JSON text `args` asks for.
fn predict(args: &Args, run: &Path, images: &[PathBuf], quiet: bool) -> Result<String> {
    let saved = SavedRun::open(run)?;
    let opts = PredictOptions {
        tiles: args.tiles,
        pixel_size: args.pixel_size,
        probabilities: args.probabilities,
        tta: args.tta,
    };
    let predicted = saved.predict_table(images, &opts, &mut Bars::new(quiet || args.json))?;
    Ok(if args.json {
        serde_json::to_string_pretty(&predicted.table.rows(&predicted.images))? + "\n"
    } else {
        predicted.csv
    })
}

/// Writes `text` to `out` atomically, or to standard output.
fn write(out: &Option<PathBuf>, text: &str, quiet: bool) -> Result<()> {
    match out {
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
