//! `furcate extract`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::config::LoadedConfig;
use furcate_core::data::Dataset;
use furcate_core::run::output::features_csv;
use furcate_core::shard::{part_path, Shard};
use furcate_core::{features, fsutil, run};

use super::progress::Bars;

/// Arguments of `furcate extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A configuration naming the extractor and (unless `--images`) the data;
    /// `[[heads]]` may be left out.
    pub config: PathBuf,
    /// Extract these images, or the images inside these folders, instead of the config's data.
    #[arg(long, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// Output file (safetensors: tensor `features` [N, D], metadata `names`);
    /// default `features.safetensors`, and with `--shard` none (the shard
    /// only fills the feature cache; with `--out` it writes its rows to
    /// `STEM.part-I-of-N.safetensors`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extract only shard I of N (from 0) of the images, in their order; or
    /// `slurm`: the Slurm array task's (`SLURM_ARRAY_TASK_ID` of `SLURM_ARRAY_TASK_COUNT`).
    #[arg(long, value_name = "I/N|slurm")]
    pub shard: Option<String>,
    /// Also write a CSV (`file`, the manifest's label columns, `f0,f1,...`) next to it.
    #[arg(long)]
    pub csv: bool,
}

/// Runs `furcate extract`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let shard = args.shard.as_deref().map(|s| Shard::parse(s, "--shard")).transpose()?;
    let cfg = LoadedConfig::for_extraction(&args.config, args.images.is_empty())?;
    let data = if args.images.is_empty() {
        Dataset::load(&cfg.config.data, &cfg.dir())?
    } else {
        Dataset::from_paths(&args.images)?
    };
    let out = match (&args.out, shard) {
        (Some(out), Some(shard)) => Some(part_path(out, shard)),
        (Some(out), None) => Some(out.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(PathBuf::from("features.safetensors")),
    };
    let data = match shard {
        Some(shard) => {
            let rows = shard.rows(data.len());
            println!("shard {}: images {}..{} of {}", shard.label(), rows.start, rows.end, data.len());
            shard.select(&data)
        }
        None => data,
    };
    if data.is_empty() {
        println!("nothing to extract");
        return Ok(());
    }
    // A tiled config gives one row per tile, named `<image>#<tile>`.
    let ex = run::extract_from(&cfg, &data, &mut Bars::new(quiet))?;
    println!("features: {} rows from the cache, {} extracted", ex.stats.hits, ex.stats.extracted);
    let Some(out) = out else { return Ok(()) };
    features::save_features(&out, &ex.features, &ex.data.names, &ex.metadata)?;
    let (n, d) = (ex.features.size()[0], ex.features.size()[1]);
    if args.csv {
        let path = out.with_extension("csv");
        fsutil::write_atomic(&path, features_csv(&ex.data, &ex.features)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    println!("wrote {} ({n} rows x {d} features)", out.display());
    Ok(())
}
