//! Slurm job arrays for extraction and prediction (`furcate slurm`).
//!
//! [`SlurmPlan::write`] writes two batch scripts: an array of `N` tasks, task
//! `I` running `furcate extract CONFIG --shard I/N` (or `furcate predict RUN
//! IMAGES... --shard I/N --out OUT`), and a finishing job that runs once the
//! whole array has succeeded: it reads every image back from the feature
//! cache into one features file (and with `train` trains the config), or
//! merges the prediction parts into `OUT`. The shard's index is written into
//! the command (`$SLURM_ARRAY_TASK_ID/N`), so a failed task can be submitted
//! again alone (`sbatch --array=I SCRIPT`). [`submit`] hands both to `sbatch`,
//! the second with `--dependency=afterok:` on the first.
//!
//! A site must provide, on every node: the furcate binary at the path the
//! scripts name (with libtorch where its rpath points, or on
//! `LD_LIBRARY_PATH`), the weights file the config names, and one shared
//! file system holding the working folder, the images, the feature cache and
//! the outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shard::{part_path, Shard};
use crate::{fsutil, Error, Result};

/// What the array computes.
#[derive(Debug, Clone, PartialEq)]
pub enum SlurmJob {
    /// Extract the images of a config into the feature cache; the finishing
    /// job writes `out` from the cache (and with `train` trains the config).
    Extract {
        /// The run configuration.
        config: PathBuf,
        /// The features file the finishing job writes.
        out: PathBuf,
        /// Train the config after extracting (`furcate train CONFIG`).
        train: bool,
    },
    /// Predict images with a trained run; the finishing job merges the parts into `out`.
    Predict {
        /// The run folder.
        run: PathBuf,
        /// Images, or folders of images.
        images: Vec<PathBuf>,
        /// The merged predictions CSV.
        out: PathBuf,
    },
}

/// Resources and places of the jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmPlan {
    /// What to compute.
    pub job: SlurmJob,
    /// Array tasks (shards), at least 1.
    pub shards: usize,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH`, ...).
    pub time: Option<String>,
    /// `--cpus-per-task`; the tasks use that many threads.
    pub cpus: Option<usize>,
    /// GPUs per task (`--gres=gpu:G`).
    pub gpus: Option<usize>,
    /// The furcate binary the nodes run.
    pub furcate: PathBuf,
    /// The folder the jobs run in (relative paths in the commands are relative to it).
    pub workdir: PathBuf,
    /// Where the scripts go; the jobs' logs go to its `logs/`.
    pub dir: PathBuf,
    /// Variables the jobs export (such as `FURCATE_CACHE`).
    pub env: Vec<(String, String)>,
}

/// The two scripts [`SlurmPlan::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmScripts {
    /// The job array.
    pub array: PathBuf,
    /// The job that runs after the whole array succeeded.
    pub finish: PathBuf,
}

impl SlurmPlan {
    /// The name of the job (`extract` or `predict`), also the scripts' stem.
    pub fn name(&self) -> &'static str {
        match self.job {
            SlurmJob::Extract { .. } => "extract",
            SlurmJob::Predict { .. } => "predict",
        }
    }

    /// The text of the array script.
    pub fn array_script(&self) -> Result<String> {
        Shard::new(0, self.shards, "--shards")?;
        let n = self.shards;
        let shard = format!("--shard \"$SLURM_ARRAY_TASK_ID/{n}\"");
        let command = match &self.job {
            SlurmJob::Extract { config, .. } => format!("extract {} {shard}", quote(config)),
            SlurmJob::Predict { run, images, out } => {
                let images: Vec<String> = images.iter().map(|p| quote(p)).collect();
                format!("predict {} {} {shard} --out {}", quote(run), images.join(" "), quote(out))
            }
        };
        let mut s = self.header("", &format!("shard $SLURM_ARRAY_TASK_ID of {n}"), "%x-%A_%a.out");
        s.push_str(&format!("#SBATCH --array=0-{}\n", n - 1));
        s.push_str(&format!(
            "# A failed task runs again alone: sbatch --array=I {}\n",
            quote(&self.dir.join(format!("{}.array.sh", self.name())))
        ));
        s.push_str(&self.resources());
        s.push_str(&self.prologue());
        s.push_str(&format!("{} --quiet {command}\n", quote(&self.furcate)));
        Ok(s)
    }

    /// The text of the finishing script.
    pub fn finish_script(&self) -> Result<String> {
        Shard::new(0, self.shards, "--shards")?;
        let furcate = quote(&self.furcate);
        let commands = match &self.job {
            SlurmJob::Extract { config, out, train } => {
                let mut c = format!("{furcate} --quiet extract {} --out {}\n", quote(config), quote(out));
                if *train {
                    c.push_str(&format!("{furcate} --quiet train {}\n", quote(config)));
                }
                c
            }
            SlurmJob::Predict { out, .. } => {
                // The parts' names with a shell glob for the index.
                let marker = Shard { index: usize::MAX, count: self.shards };
                let glob = part_path(out, marker).display().to_string();
                let (head, tail) = glob.split_once(&usize::MAX.to_string()).unwrap_or((&glob, ""));
                format!(
                    "{furcate} --quiet predict --merge {}*{} --out {}\n",
                    quote(Path::new(head)),
                    quote(Path::new(tail)),
                    quote(out)
                )
            }
        };
        let mut s = self.header("-finish", "after every shard succeeded", "%x-%j.out");
        s.push_str(&self.resources());
        s.push_str(&self.prologue());
        s.push_str(&commands);
        Ok(s)
    }

    /// Writes both scripts into [`SlurmPlan::dir`] (and makes its `logs/`).
    pub fn write(&self) -> Result<SlurmScripts> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let array = self.dir.join(format!("{}.array.sh", self.name()));
        let finish = self.dir.join(format!("{}.finish.sh", self.name()));
        fsutil::write_atomic(&array, self.array_script()?.as_bytes())?;
        fsutil::write_atomic(&finish, self.finish_script()?.as_bytes())?;
        Ok(SlurmScripts { array, finish })
    }

    /// The shebang, a comment saying `what`, the job's name (`furcate-NAME` +
    /// `suffix`) and its log file (`output` in `logs/`, Slurm's `%` patterns).
    fn header(&self, suffix: &str, what: &str, output: &str) -> String {
        format!(
            "#!/bin/bash\n# Written by `furcate slurm`: furcate {} over {} shards, {what}.\n#SBATCH \
             --job-name=furcate-{}{suffix}\n#SBATCH --output={}/{output}\n",
            self.name(),
            self.shards,
            self.name(),
            self.dir.join("logs").display(),
        )
    }

    fn resources(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.partition {
            s.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if let Some(t) = &self.time {
            s.push_str(&format!("#SBATCH --time={t}\n"));
        }
        if let Some(c) = self.cpus {
            s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
        }
        if let Some(g) = self.gpus.filter(|&g| g > 0) {
            s.push_str(&format!("#SBATCH --gres=gpu:{g}\n"));
        }
        s
    }

    fn prologue(&self) -> String {
        let mut s = format!("set -euo pipefail\ncd {}\n", quote(&self.workdir));
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", quote(Path::new(v))));
        }
        s.push_str(
            "# As many threads as the task has CPUs.\nif [[ -n \"${SLURM_CPUS_PER_TASK:-}\" ]]; then export \
             FURCATE_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi\n",
        );
        s
    }
}

/// `path` quoted for bash (single quotes).
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// The job ids [`submit`] got from `sbatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The array's job id.
    pub array: String,
    /// The finishing job's id.
    pub finish: String,
}

/// Submits the array, then the finishing job with `--dependency=afterok:`
/// on it (cancelled if a task fails). With `wait`, waits for the finishing
/// job to end (`sbatch --wait`) and fails when it (or the array) failed.
pub fn submit(scripts: &SlurmScripts, wait: bool) -> Result<Submitted> {
    let array = sbatch(&[], &scripts.array)?;
    let mut args = vec![format!("--dependency=afterok:{array}"), "--kill-on-invalid-dep=yes".to_string()];
    if wait {
        args.push("--wait".into());
    }
    let finish = sbatch(&args, &scripts.finish)?;
    Ok(Submitted { array, finish })
}

/// Runs `sbatch --parsable ARGS SCRIPT`; returns the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .map_err(|e| Error::io("sbatch", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `ID` or `ID;CLUSTER` first; `--wait` may add a line.
    let id = stdout.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    if !out.status.success() || id.is_empty() {
        return Err(Error::data(
            script,
            format!(
                "sbatch {} failed ({}{}): {}",
                args.join(" "),
                out.status,
                if id.is_empty() { String::new() } else { format!(", job {id}") },
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(id)
}
