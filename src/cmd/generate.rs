//! `furcate generate`: the synthetic data set (or a variant) as PNGs and a manifest.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use furcate_synth::SynthConfig;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Arguments of `furcate generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data-set folder to create (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// A generator config (TOML) instead of the built-in `configs/synthetic.toml`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed instead of the config's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Replace `--out` if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `furcate generate`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let start = Instant::now();
    let mut cfg = match &args.config {
        Some(path) => SynthConfig::from_file(path)?,
        None => SynthConfig::default(),
    };
    if let Some(seed) = args.seed {
        cfg.seed = seed;
        cfg.validate().context("--seed")?;
    }
    let total = cfg.image_count();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix("generating");
        bar
    };
    let summary = furcate_synth::write_dataset_with_progress(&cfg, &args.out, args.force, &|done, _| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("generating {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote {} images ({} morphologies x {} volume fractions x {}, {}x{} px, seed {}) to {} in {:.2} s",
        summary.images,
        cfg.morphologies.len(),
        cfg.volume_fractions.len(),
        cfg.images_per_class,
        cfg.size,
        cfg.size,
        cfg.seed,
        summary.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
