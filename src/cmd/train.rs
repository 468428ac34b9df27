//! `furcate train`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::config::{LoadedConfig, OptimizerKind};
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
    /// When another furcate process is writing the same run folder, wait for
    /// it to end instead of failing (then, without --force, a folder it
    /// finished is still refused).
    #[arg(long)]
    pub wait: bool,
    /// Skip the plots and report.html.
    #[arg(long)]
    pub no_report: bool,
    /// Cross-validate in K stratified folds, then train the saved model on
    /// every labelled image (sets `[training] folds`).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(2..))]
    pub folds: Option<u32>,
    /// Print one JSON document (scores, choices, warnings, the run folder) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `furcate train`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let mut cfg = LoadedConfig::from_file(&args.config)?;
    if let Some(k) = args.folds {
        cfg.config.training.folds = Some(k as usize);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(args.config.file_stem().unwrap_or_default()));
    let opts = TrainOptions {
        out,
        resume: args.resume,
        force: args.force,
        report: !args.no_report,
        wait: args.wait,
    };
    let summary = run::train_run(&cfg, &opts, &mut Bars::new(quiet || args.json))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary_json(&summary))?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// The document `furcate train --json` prints, from the run's typed results.
pub fn summary_json(summary: &run::RunSummary) -> serde_json::Value {
    let o = &summary.outcome;
    serde_json::json!({
        "run_folder": summary.dir,
        "epochs_run": o.epochs_run,
        "best_epoch": o.best_epoch,
        "stopped_early": o.stopped_early,
        "features_extracted": summary.cache.extracted,
        "features_from_cache": summary.cache.hits,
        "evaluation": summary.evaluation,
        "choices": summary.results.choices,
        "cross_validation": summary.results.cross_validation,
        "warnings": summary.results.warnings,
        "notes": summary.results.notes,
    })
}

/// Prints the results table of a finished run.
pub fn print_summary(summary: &run::RunSummary) {
    let o = &summary.outcome;
    let trained = if summary.results.optimizer == OptimizerKind::Lbfgs {
        // L-BFGS keeps its last iterate: no best epoch, and converging is no early stop.
        let end = if o.stopped_early { "converged" } else { "at the iteration limit" };
        format!("solved in {} L-BFGS iterations ({end})", o.epochs_run)
    } else {
        let early = if o.stopped_early { ", stopped early" } else { "" };
        format!("trained {} epochs (best epoch {}{early})", o.epochs_run, o.best_epoch)
    };
    println!("{trained}; features: {} extracted, {} from cache", summary.cache.extracted, summary.cache.hits);
    let r = &summary.results;
    if let Some(data) = &r.data {
        println!("{data}");
    }
    for n in &r.notes {
        println!("{n}");
    }
    if let Some(choices) = &r.choices {
        print!("{}", run::format_choices(choices));
    }
    if let Some(cv) = &r.cross_validation {
        print!("{}", cv.format_table());
        println!("pooled out-of-fold scores:");
    }
    print!("{}", run::format_table(&summary.evaluation));
    let report = summary.dir.join("report.html");
    if report.exists() {
        println!("report: {}", report.display());
    }
    println!("run folder: {}", summary.dir.display());
}
