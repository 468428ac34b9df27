//! `furcate suggest`: which unlabelled images to label next, or (with
//! `--simulate`) the learning curve of each way of choosing them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use furcate_core::fsutil;
use furcate_core::run::SavedRun;
use furcate_core::suggest::simulate::Simulation;
use furcate_core::suggest::{self, sheet, Strategy, SuggestOptions};

use super::progress::Bars;

/// Arguments of `furcate suggest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run folder written by `furcate train`.
    #[arg(required_unless_present = "simulate")]
    pub run: Option<PathBuf>,
    /// The unlabelled images: files, folders, or quoted glob patterns
    /// ("new/*.png", "scans/**/*.tif").
    #[arg(required_unless_present = "simulate")]
    pub pool: Vec<PathBuf>,
    /// How many images to suggest.
    #[arg(short = 'n', long = "number", default_value_t = 20, value_name = "K")]
    pub k: usize,
    /// How to choose: diverse (uncertainty x distance to what is labelled or
    /// chosen), margin, entropy (uncertainty alone), kcentre (distance alone),
    /// badge (k-means++ on the class heads' gradient embeddings), random.
    #[arg(long, default_value = "diverse", value_parser = clap::builder::PossibleValuesParser::new(Strategy::NAMES))]
    pub strategy: String,
    /// Only these heads' uncertainty and features count (repeat for several; default: every head).
    #[arg(long = "head", value_name = "NAME")]
    pub heads: Vec<String>,
    /// Seed of `--strategy random` and `badge`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The CSV to write (default `suggestions.csv`); with `--simulate`, the output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The contact sheet to write (default: the CSV's path with `.png`).
    #[arg(long, conflicts_with = "no_sheet")]
    pub sheet: Option<PathBuf>,
    /// Write no contact sheet.
    #[arg(long)]
    pub no_sheet: bool,
    /// The images' micrometres per pixel (needed by a run with `data.pixel_size`).
    #[arg(long)]
    pub pixel_size: Option<f64>,
    /// Instead of suggesting: run the simulation file CONFIG (TOML: `base`,
    /// `strategies`, `seeds`, `batch`, `rounds`, ...) and write its learning curves.
    #[arg(long, value_name = "CONFIG", conflicts_with_all = ["run", "pool", "sheet", "no_sheet", "pixel_size"])]
    pub simulate: Option<PathBuf>,
}

/// Runs `furcate suggest`.
pub fn run(args: &Args, quiet: bool) -> Result<()> {
    if let Some(file) = &args.simulate {
        return simulate(file, args.out.clone(), quiet);
    }
    let run = args.run.as_deref().expect("clap requires RUN without --simulate");
    let saved = SavedRun::open(run)?;
    let opts = SuggestOptions {
        k: args.k,
        strategy: args.strategy.parse()?,
        seed: args.seed,
        heads: args.heads.clone(),
        pixel_size: args.pixel_size,
    };
    let found = suggest::suggest(&saved, &args.pool, &opts, &mut Bars::new(quiet))?;
    for note in &found.notes {
        eprintln!("note: {note}");
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("suggestions.csv"));
    fsutil::write_atomic(&out, found.csv()?.as_bytes())?;
    let sheet_path =
        (!args.no_sheet).then(|| args.sheet.clone().unwrap_or_else(|| out.with_extension("png")));
    if let Some(path) = &sheet_path {
        let tiles: Vec<sheet::Tile> = found
            .items
            .iter()
            .map(|s| sheet::Tile {
                file: s.file.clone(),
                caption: match s.uncertainty {
                    Some(u) => format!("#{}  uncertainty {u:.2}", s.rank),
                    None => format!("#{}", s.rank),
                },
            })
            .collect();
        let title =
            format!("{} of {} images to label next ({})", found.items.len(), found.pool, opts.strategy);
        let png = sheet::contact_sheet(&title, &tiles)?;
        fsutil::write_atomic(path, &png).with_context(|| format!("writing {}", path.display()))?;
    }
    for s in &found.items {
        println!("{:>3}  {}  {}", s.rank, s.file.display(), s.reason);
    }
    if !quiet {
        let sheet = sheet_path.map(|p| format!(" and {}", p.display())).unwrap_or_default();
        eprintln!(
            "wrote {}{sheet}: fill in the empty label columns and append the rows to the manifest",
            out.display()
        );
    }
    Ok(())
}

/// `furcate suggest --simulate FILE`.
fn simulate(file: &Path, out: Option<PathBuf>, quiet: bool) -> Result<()> {
    let sim = Simulation::from_file(file)?;
    let summary = sim.run(out, &mut Bars::new(quiet), &mut |_| {})?;
    print!("{}", summary.markdown);
    println!(
        "{} points in {:.1} s; results: {}",
        summary.points.len(),
        summary.wall_s,
        summary.dir.display()
    );
    Ok(())
}
