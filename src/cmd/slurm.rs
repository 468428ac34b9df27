//! `furcate slurm`: job-array scripts for extraction or prediction, and their submission.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use furcate_core::slurm::{self, SlurmJob, SlurmPlan};

/// Arguments of `furcate slurm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run configuration (extract its images into the feature cache), or
    /// a run folder (predict IMAGES with it).
    pub config_or_run: PathBuf,
    /// With a run folder: images, or folders of images, to predict.
    pub images: Vec<PathBuf>,
    /// Array tasks: each extracts or predicts one shard of the images.
    #[arg(long)]
    pub shards: usize,
    /// The finishing job's output: the features file (default
    /// `features.safetensors`), or the merged predictions (default `predictions.csv`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With a config: train it once every image is extracted.
    #[arg(long)]
    pub train: bool,
    /// Where the scripts go (their logs go to its `logs/`).
    #[arg(long, default_value = "slurm")]
    pub dir: PathBuf,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each task (Slurm's formats, such as `30`, `2:00:00`, `1-0`).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task (and threads each task uses).
    #[arg(long)]
    pub cpus: Option<usize>,
    /// GPUs per task (`--gres=gpu:G`).
    #[arg(long)]
    pub gpus: Option<usize>,
    /// The furcate binary the nodes run (default: this one).
    #[arg(long)]
    pub furcate: Option<PathBuf>,
    /// Submit the scripts with `sbatch` (the finishing job after the array).
    #[arg(long)]
    pub submit: bool,
    /// With `--submit`: wait until the finishing job ends; fail if it (or the array) failed.
    #[arg(long, requires = "submit")]
    pub wait: bool,
}

/// Runs `furcate slurm`.
pub fn run(args: &Args) -> Result<()> {
    let abs = |p: &Path| std::path::absolute(p).with_context(|| p.display().to_string());
    let is_run = args.config_or_run.join("checkpoint").join("state.json").is_file();
    let job = if is_run {
        if args.images.is_empty() {
            bail!("{}: a run folder: give the IMAGES to predict", args.config_or_run.display());
        }
        if args.train {
            bail!("--train: {} is a run folder (it is trained already)", args.config_or_run.display());
        }
        SlurmJob::Predict {
            run: abs(&args.config_or_run)?,
            // As given: the jobs run in this folder, and the CSV names the images as a
            // `furcate predict` here would.
            images: args.images.clone(),
            out: abs(args.out.as_deref().unwrap_or(Path::new("predictions.csv")))?,
        }
    } else {
        if !args.images.is_empty() {
            bail!(
                "{}: IMAGES are only for a run folder (a config extracts its own data)",
                args.config_or_run.display()
            );
        }
        // Read now, so that a broken config fails here rather than on every node.
        furcate_core::config::LoadedConfig::for_extraction(&args.config_or_run, true)?;
        SlurmJob::Extract {
            config: abs(&args.config_or_run)?,
            out: abs(args.out.as_deref().unwrap_or(Path::new("features.safetensors")))?,
            train: args.train,
        }
    };
    let furcate = match &args.furcate {
        Some(p) => abs(p)?,
        None => std::env::current_exe().context("the path of this furcate binary")?,
    };
    // The nodes find the weights (`cache:NAME`) and the feature cache where this process does.
    let env =
        vec![("FURCATE_CACHE".to_string(), abs(&furcate_core::weights::cache_dir())?.display().to_string())];
    let plan = SlurmPlan {
        job,
        shards: args.shards,
        partition: args.partition.clone(),
        time: args.time.clone(),
        cpus: args.cpus,
        gpus: args.gpus,
        furcate,
        workdir: std::env::current_dir()?,
        dir: abs(&args.dir)?,
        env,
    };
    let scripts = plan.write()?;
    println!("wrote {} ({} tasks)", scripts.array.display(), args.shards);
    println!("wrote {} (after every task succeeded)", scripts.finish.display());
    if args.submit {
        let ids = slurm::submit(&scripts, args.wait)?;
        println!("submitted array job {} and finishing job {}", ids.array, ids.finish);
        if args.wait {
            println!("finished; logs in {}", plan.dir.join("logs").display());
        }
    } else {
        println!(
            "submit with: furcate slurm ... --submit, or: jobid=$(sbatch --parsable {}) && sbatch \
             --dependency=afterok:$jobid --kill-on-invalid-dep=yes {}",
            scripts.array.display(),
            scripts.finish.display()
        );
    }
    Ok(())
}
