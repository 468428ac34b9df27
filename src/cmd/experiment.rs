//! `furcate experiment`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::experiment::{format_mae, Experiment, ExperimentOptions};

use super::progress::Bars;

/// Arguments of `furcate experiment`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The experiment file (TOML: `base`, `[overrides]`, `[sweep]`).
    pub config: PathBuf,
    /// The output folder (default: the file's `out`, else runs/<file name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Retrain points whose run folder exists (default: read them back).
    #[arg(long)]
    pub force: bool,
    /// Write each run's plots and report.html (slower).
    #[arg(long)]
    pub report: bool,
    /// When another furcate process is writing the same output folder (or
    /// one of its runs), wait for it to end instead of failing.
    #[arg(long)]
    pub wait: bool,
}

/// Runs `furcate experiment`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let experiment = Experiment::from_file(&args.config)?;
    let opts =
        ExperimentOptions { out: args.out.clone(), force: args.force, report: args.report, wait: args.wait };
    let total = experiment.points.len();
    let mut bars = Bars::new(quiet);
    let summary = experiment.run(&opts, &mut bars, &mut |i, r| {
        let cache = match r.cache {
            Some(c) => format!("features: {} extracted, {} from cache", c.extracted, c.hits),
            None => "already done, read back".to_string(),
        };
        let errors: Vec<String> = r
            .heads
            .iter()
            .map(|h| match (h.error_rate, h.mae) {
                (Some(e), _) => format!("{} {:.4} %", h.name, 100.0 * e),
                (None, Some(m)) => format!("{} MAE {}", h.name, format_mae(m)),
                _ => h.name.clone(),
            })
            .collect();
        eprintln!(
            "[{}/{total}] {}: {}; best epoch {}/{}; {:.1} s; {cache}",
            i + 1,
            r.point.name,
            errors.join(", "),
            r.best_epoch,
            r.epochs_run,
            r.wall_s
        );
    })?;
    print!("{}", summary.markdown);
    println!("{} points in {:.1} s; results: {}", total, summary.wall_s, summary.dir.display());
    Ok(())
}
