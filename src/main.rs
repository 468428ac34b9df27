//! The `furcate` command line: argument parsing and printing only; the work
//! happens in `furcate-core` and the crates beside it.
#![deny(missing_docs)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
// Linked for its typetag registrations (`type = "ordinal"`, `type = "gaussian"`).
use furcate_heads as _;

/// furcate: data-efficient quantitative metallography with frozen ImageNet
/// features and one small head per labelled property.
#[derive(Debug, Parser)]
#[command(name = "furcate", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: info, -vv: debug, -vvv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// No progress bars, only results and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// CPU threads for libtorch and furcate's own parallel work (default:
    /// `FURCATE_THREADS`, else the cores this process may use).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What furcate runs on: versions, threads, CUDA devices, weights, registered types.
    Info(cmd::info::Args),
    /// Generate the synthetic data set if missing, train configs/default.toml, print the results.
    Demo(cmd::demo::Args),
    /// Check a config and its data without training: images, labels, duplicates, weights, cache size.
    Check(cmd::check::Args),
    /// Train the heads a config declares, evaluate them, and write a run folder.
    Train(cmd::train::Args),
    /// Score a trained run on its test part or on other labelled data.
    Eval(cmd::eval::Args),
    /// Predict every head's property for unlabelled micrographs.
    Predict(cmd::predict::Args),
    /// Which unlabelled images to label next (CSV to fill in, contact sheet); --simulate: learning curves.
    Suggest(cmd::suggest::Args),
    /// Sweep a base config over splits, seeds, trunks, head sets and extractors; tabulate the results.
    Experiment(cmd::experiment::Args),
    /// Write the extractor's features of a config's images (safetensors, optionally CSV).
    Extract(cmd::extract::Args),
    /// Generate a synthetic data set (default: the thesis's 3500 images) as PNGs and a manifest.
    Generate(cmd::generate::Args),
    /// What the feature cache holds (`cache info`), or fold its segment files into one (`cache merge`).
    Cache(cmd::cache::Args),
    /// Write (and with --submit run) Slurm job-array scripts that extract or predict in shards.
    Slurm(cmd::slurm::Args),
}

fn main() -> ExitCode {
    passive_openmp();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(e) = furcate_core::runtime::set_threads(cli.threads) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Info(args) => cmd::info::run(&args),
        Command::Demo(args) => cmd::demo::run(&args, cli.quiet),
        Command::Check(args) => cmd::check::run(&args),
        Command::Train(args) => cmd::train::run(&args, cli.quiet),
        Command::Eval(args) => cmd::eval::run(&args, cli.quiet),
        Command::Predict(args) => cmd::predict::run(&args, cli.quiet),
        Command::Suggest(args) => cmd::suggest::run(&args, cli.quiet),
        Command::Experiment(args) => cmd::experiment::run(&args, cli.quiet),
        Command::Extract(args) => cmd::extract::run(&args, cli.quiet),
        Command::Generate(args) => cmd::generate::run(&args, cli.quiet),
        Command::Cache(args) => cmd::cache::run(&args),
        Command::Slurm(args) => cmd::slurm::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// message already shows (our I/O errors print their OS error themselves).
fn message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// OpenMP threads that wait by spinning make several furcate processes on
/// shared cores crawl (16x slower under load). libgomp reads
/// `OMP_WAIT_POLICY` when it is loaded, before `main`: when it is not set,
/// set it to `PASSIVE` and start this program again with it.
fn passive_openmp() {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .exec();
    // exec only returns on failure: carry on with the default policy.
    tracing::debug!("could not restart with OMP_WAIT_POLICY=PASSIVE: {err}");
}

/// Whether stderr gets ANSI colour: only on a terminal, and not with `NO_COLOR` set.
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FURCATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false)
        .init();
}
