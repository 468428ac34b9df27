//! `furcate cache`: what the feature cache holds, and folding its segments.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::features::{cache_info, CacheInfo, FeatureCache};
use furcate_core::{fsutil, weights};

/// Arguments of `furcate cache`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Per extractor config: entries (images or tiles), segment files, size, stray temporary files.
    Info {
        /// The cache's folder (default: `$FURCATE_CACHE/features`; a config with
        /// `data.feature_cache` keeps its cache in that folder instead).
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fold each config's segment files into one, and remove temporary files
    /// that killed writers left (older than an hour, so running writers keep theirs).
    Merge {
        /// The cache's folder (default: `$FURCATE_CACHE/features`).
        dir: Option<PathBuf>,
    },
}

/// Runs `furcate cache`.
pub fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Info { dir, json } => {
            let info = cache_info(&root(dir))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
        }
        Command::Merge { dir } => {
            let root = root(dir);
            let info = cache_info(&root)?;
            for folder in &info.folders {
                let cache = FeatureCache::new(&root, &folder.key);
                let removed = cache.compact()?;
                let temps =
                    fsutil::remove_stray_temps_older(cache.dir(), std::time::Duration::from_secs(3600));
                println!(
                    "{}: {} entries, {} segments folded into one, {temps} temporary files removed",
                    folder.key, folder.entries, removed,
                );
            }
        }
    }
    Ok(())
}

fn root(dir: &Option<PathBuf>) -> PathBuf {
    dir.clone().unwrap_or_else(|| weights::cache_dir().join("features"))
}

fn print_info(info: &CacheInfo) {
    println!("feature cache {}", info.dir.display());
    if info.folders.is_empty() {
        println!("  empty");
    }
    for f in &info.folders {
        let what = f.config.as_ref().map_or_else(
            || "(config not recorded)".to_string(),
            |c| {
                let w = c.weights_sha256.as_deref().map_or("none", |s| &s[..s.len().min(12)]);
                format!("{} weights {w} fit {}", c.extractor, c.fit)
            },
        );
        println!("  {} {what}", f.key);
        println!(
            "    {} entries, {} rows in {} segments, {:.1} MB{}{}",
            f.entries,
            f.rows,
            f.segments,
            f.bytes as f64 / 1e6,
            if f.temporary > 0 { format!(", {} temporary files", f.temporary) } else { String::new() },
            if f.unreadable.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable segments", f.unreadable.len())
            }
        );
    }
}
