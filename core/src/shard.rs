//! Shards: one machine's share of a job split over many (`--shard I/N`).
//!
//! A shard is a contiguous block of the images in their order (the
//! manifest's rows, or the sorted file list of `predict`), the blocks as even
//! as can be (sizes differ by at most one), every image in exactly one shard.
//! Extraction needs no merge (the feature cache is the merge, see
//! [`crate::features`]); a shard's predictions go to a part file
//! ([`part_path`]) and [`merge_parts`] joins the parts in shard order, which
//! is the images' order.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::data::Dataset;
use crate::{Error, Result};

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which share, `0..count`.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl Shard {
    /// Shard `index` of `count`; an index out of range or a count of 0 is
    /// an error naming `flag`.
    pub fn new(index: usize, count: usize, flag: &str) -> Result<Shard> {
        if count == 0 {
            return Err(Error::Invalid(format!("{flag}: the number of shards must be at least 1")));
        }
        if index >= count {
            return Err(Error::Invalid(format!(
                "{flag}: shard index {index} is out of range 0..{count} (indices start at 0)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (shard `I` of `N`, 0-based), or `slurm`: the index and
    /// count of a Slurm job array task ([`Shard::from_slurm`]). Errors name `flag`.
    pub fn parse(text: &str, flag: &str) -> Result<Shard> {
        if text == "slurm" {
            return Shard::from_slurm(|k| std::env::var(k).ok(), flag);
        }
        let bad = || Error::Invalid(format!("{flag} {text}: expected I/N (shard I of N, from 0) or `slurm`"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(i, n, &format!("{flag} {text}"))
    }

    /// The shard of a Slurm array task: `SLURM_ARRAY_TASK_ID` of
    /// `SLURM_ARRAY_TASK_COUNT`, read through `var`. The array must be
    /// `0-(N-1)`: a task re-submitted alone (`sbatch --array=3`) counts 1
    /// task, so it must be given `I/N` instead.
    pub fn from_slurm(var: impl Fn(&str) -> Option<String>, flag: &str) -> Result<Shard> {
        let read = |k: &str| -> Result<usize> {
            let v = var(k).ok_or_else(|| {
                Error::Invalid(format!("{flag} slurm: {k} is not set (not inside a Slurm job array task)"))
            })?;
            v.trim().parse().map_err(|_| Error::Invalid(format!("{flag} slurm: {k}={v} is not a number")))
        };
        let (id, count) = (read("SLURM_ARRAY_TASK_ID")?, read("SLURM_ARRAY_TASK_COUNT")?);
        Shard::new(
            id,
            count,
            &format!(
                "{flag} slurm (SLURM_ARRAY_TASK_ID={id}, SLURM_ARRAY_TASK_COUNT={count}; an array that is \
                 not 0-(N-1) needs --shard I/N)"
            ),
        )
    }

    /// The rows of `len` items that this shard takes: `[index * len / count,
    /// (index + 1) * len / count)`.
    pub fn rows(&self, len: usize) -> Range<usize> {
        (self.index * len / self.count)..((self.index + 1) * len / self.count)
    }

    /// This shard's images of `data` ([`Shard::rows`]), in their order.
    pub fn select(&self, data: &Dataset) -> Dataset {
        data.subset(&self.rows(data.len()).collect::<Vec<_>>())
    }

    /// `I/N`, as `--shard` takes it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// The part file of `shard` for the output `out`:
/// `STEM.part-I-of-N.EXT` beside it (`predictions.csv` ->
/// `predictions.part-3-of-8.csv`).
pub fn part_path(out: &Path, shard: Shard) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = out.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    out.with_file_name(format!("{stem}.part-{}-of-{}{ext}", shard.index, shard.count))
}

/// The shard a part file's name says it holds ([`part_path`]'s names).
pub fn part_of(path: &Path) -> Option<Shard> {
    let stem = path.file_stem()?.to_str()?;
    let (_, tail) = stem.rsplit_once(".part-")?;
    let (i, n) = tail.split_once("-of-")?;
    Shard::new(i.parse().ok()?, n.parse().ok()?, "").ok()
}

/// Joins the CSV parts `parts` (named by [`part_path`], any order) into one
/// CSV in shard order: every part of one `N` must be there once, with the
/// same header. An empty part file is a shard with no images. Errors name
/// the file, or the missing indices.
pub fn merge_parts(parts: &[PathBuf]) -> Result<String> {
    let first = parts.first().ok_or_else(|| Error::Invalid("--merge: no part files given".into()))?;
    let mut slots: Vec<Option<(&PathBuf, String)>> = Vec::new();
    for path in parts {
        let shard = part_of(path).ok_or_else(|| {
            Error::data(path, "not a part file (its name must end in .part-I-of-N.EXT, as --shard writes)")
        })?;
        if slots.is_empty() {
            slots.resize_with(shard.count, || None);
        }
        if shard.count != slots.len() {
            return Err(Error::data(
                path,
                format!(
                    "is a part of {} shards, but {} is a part of {}",
                    shard.count,
                    first.display(),
                    slots.len()
                ),
            ));
        }
        if let Some((other, _)) = &slots[shard.index] {
            return Err(Error::data(
                path,
                format!("shard {} is given twice (also {})", shard.index, other.display()),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        slots[shard.index] = Some((path, text));
    }
    let missing: Vec<String> =
        slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i.to_string()).collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "--merge: the parts of shard(s) {} of {} are missing (re-run those indices)",
            crate::error::abridged(&missing, ", "),
            slots.len()
        )));
    }
    let mut out = String::new();
    let mut header: Option<(&str, &PathBuf)> = None;
    for (path, text) in slots.iter().flatten() {
        if text.is_empty() {
            continue;
        }
        let (head, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        match header {
            None => {
                out.push_str(head);
                out.push('\n');
                header = Some((head, path));
            }
            Some((h, p)) if h != head => {
                return Err(Error::data(path, format!("its header differs from that of {}", p.display())));
            }
            Some(_) => {}
        }
        out.push_str(body);
        if !body.is_empty() && !body.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
