//! `furcate demo`: the main job on a fresh machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use furcate_core::config::LoadedConfig;
use furcate_core::run::{self, TrainOptions};

use super::progress::Bars;

/// The demo configuration, as shipped in `configs/default.toml`.
const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

/// Arguments of `furcate demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run configuration to use instead of the built-in `configs/default.toml`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the synthetic data set is (generated there when missing).
    #[arg(long, default_value = "data/synthetic")]
    pub data: PathBuf,
    /// The run folder (replaced if it exists).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
}

/// Runs `furcate demo`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let start = Instant::now();
    if !args.data.join(furcate_synth::MANIFEST_FILE).exists() {
        let cfg = furcate_synth::SynthConfig::default();
        if !quiet {
            eprintln!(
                "generating the synthetic data set ({} images) in {}",
                cfg.image_count(),
                args.data.display()
            );
        }
        let summary = furcate_synth::write_dataset(&cfg, &args.data, false)
            .with_context(|| format!("generating {}", args.data.display()))?;
        if !quiet {
            eprintln!("wrote {} images in {:.1} s", summary.images, start.elapsed().as_secs_f64());
        }
    }
    let mut cfg = match &args.config {
        Some(path) => LoadedConfig::from_file(path)?,
        None => LoadedConfig::from_str(DEFAULT_CONFIG, Path::new("configs/default.toml"))?,
    };
    if args.config.is_none() {
        cfg.config.data.manifest = Some(std::path::absolute(args.data.join(furcate_synth::MANIFEST_FILE))?);
    }
    let opts = TrainOptions { out: args.out.clone(), resume: false, force: true, report: true, wait: false };
    let summary = run::train_run(&cfg, &opts, &mut Bars::new(quiet))?;
    super::train::print_summary(&summary);
    println!("demo wall time: {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
