//! `furcate extract`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use furcate_core::config::LoadedConfig;
use furcate_core::{features, fsutil, run};

use super::progress::Bars;

/// Arguments of `furcate extract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run configuration naming the data and the extractor.
    pub config: PathBuf,
    /// Output file (safetensors: tensor `features` [N, D], metadata `names`).
    #[arg(long, default_value = "features.safetensors")]
    pub out: PathBuf,
    /// Also write a CSV (`file,f0,f1,...`) next to it.
    #[arg(long)]
    pub csv: bool,
}

/// Runs `furcate extract`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    let cfg = LoadedConfig::from_file(&args.config)?;
    let (data, feats, meta) = run::extract(&cfg, &mut Bars::new(quiet))?;
    features::save_features(&args.out, &feats, &data.names, &meta)?;
    let (n, d) = (feats.size()[0], feats.size()[1]);
    if args.csv {
        let path = args.out.with_extension("csv");
        let values = Vec::<f32>::try_from(feats.view([-1]))?;
        let mut s = String::from("file");
        for j in 0..d {
            let _ = write!(s, ",f{j}");
        }
        s.push('\n');
        for (i, name) in data.names.iter().enumerate() {
            s.push_str(&csv_cell(name));
            for v in &values[i * d as usize..(i + 1) * d as usize] {
                let _ = write!(s, ",{v}");
            }
            s.push('\n');
        }
        fsutil::write_atomic(&path, s.as_bytes())?;
        println!("wrote {}", path.display());
    }
    println!("wrote {} ({n} images x {d} features)", args.out.display());
    Ok(())
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
