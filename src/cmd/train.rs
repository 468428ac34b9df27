//! `furcate train`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::config::LoadedConfig;
use furcate_core::run::{self, TrainOptions};

use super::progress::Bars;

/// Arguments of `furcate train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run configuration (TOML).
    pub config: PathBuf,
    /// The run folder to write (default: runs/<config name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run from its last snapshot.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing run folder.
    #[arg(long)]
    pub force: bool,
    /// Skip the plots and report.html.
    #[arg(long)]
    pub no_report: bool,
}

/// Runs `furcate train`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let cfg = LoadedConfig::from_file(&args.config)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(args.config.file_stem().unwrap_or_default()));
    let opts = TrainOptions { out, resume: args.resume, force: args.force, report: !args.no_report };
    let summary = run::train_run(&cfg, &opts, &mut Bars::new(quiet))?;
    print_summary(&summary);
    Ok(())
}

/// Prints the results table of a finished run.
pub fn print_summary(summary: &run::RunSummary) {
    let o = &summary.outcome;
    println!(
        "trained {} epochs (best epoch {}{}); features: {} extracted, {} from cache",
        o.epochs_run,
        o.best_epoch,
        if o.stopped_early { ", stopped early" } else { "" },
        summary.cache.extracted,
        summary.cache.hits
    );
    println!("{}", summary.data);
    print!("{}", run::format_choices(&summary.choices));
    print!("{}", run::format_table(&summary.evaluation));
    let report = summary.dir.join("report.html");
    if report.exists() {
        println!("report: {}", report.display());
    }
    println!("run folder: {}", summary.dir.display());
}
