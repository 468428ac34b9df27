//! `furcate extract`.

use std::path::PathBuf;

use anyhow::Result;
use furcate_core::config::LoadedConfig;
use furcate_core::data::Dataset;
use furcate_core::run::output::features_csv;
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
    /// Output file (safetensors: tensor `features` [N, D], metadata `names`).
    #[arg(long, default_value = "features.safetensors")]
    pub out: PathBuf,
    /// Also write a CSV (`file`, the manifest's label columns, `f0,f1,...`) next to it.
    #[arg(long)]
    pub csv: bool,
}

/// Runs `furcate extract`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let cfg = LoadedConfig::for_extraction(&args.config, args.images.is_empty())?;
    let data = if args.images.is_empty() {
        Dataset::load(&cfg.config.data, &cfg.dir())?
    } else {
        Dataset::from_paths(&args.images)?
    };
    // A tiled config gives one row per tile, named `<image>#<tile>`.
    let (data, feats, meta) = run::extract_from(&cfg, &data, &mut Bars::new(quiet))?;
    features::save_features(&args.out, &feats, &data.names, &meta)?;
    let (n, d) = (feats.size()[0], feats.size()[1]);
    if args.csv {
        let path = args.out.with_extension("csv");
        fsutil::write_atomic(&path, features_csv(&data, &feats)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    println!("wrote {} ({n} rows x {d} features)", args.out.display());
    Ok(())
}
