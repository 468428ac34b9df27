//! `furcate info`.

use anyhow::Result;
use furcate_core::{plugin, registry, runtime, weights};
use serde::Serialize;

/// Arguments of `furcate info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// List what the head plugin at PATH provides (and check that it loads),
    /// instead of the usual report. May be repeated.
    #[arg(long, value_name = "PATH")]
    plugin: Vec<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Info {
    furcate: &'static str,
    libtorch: runtime::Libtorch,
    cpu_threads: i32,
    cuda: Vec<runtime::CudaDevice>,
    cache: std::path::PathBuf,
    weights: Vec<weights::WeightsFile>,
    extractors: Vec<String>,
    heads: Vec<String>,
}

/// Runs `furcate info`.
pub fn run(args: &Args) -> Result<()> {
    if !args.plugin.is_empty() {
        return plugins(args);
    }
    let info = Info {
        furcate: env!("CARGO_PKG_VERSION"),
        libtorch: runtime::check_libtorch()?,
        cpu_threads: tch::get_num_threads(),
        cuda: runtime::cuda_devices(),
        cache: weights::cache_dir(),
        weights: weights::list_weights(&weights::weights_dir())?,
        extractors: registry::extractor_types(),
        heads: registry::head_types(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("furcate {}", info.furcate);
    println!("libtorch {} ({})", info.libtorch.version, info.libtorch.dir.display());
    println!("cpu threads: {}", info.cpu_threads);
    if info.cuda.is_empty() {
        println!("cuda: none");
    } else {
        for d in &info.cuda {
            let mem = d
                .memory_bytes
                .map(|b| format!(", {:.1} GiB", b as f64 / (1u64 << 30) as f64))
                .unwrap_or_default();
            println!("cuda:{}: {}{mem}", d.index, d.name);
        }
    }
    println!("cache: {}", info.cache.display());
    if info.weights.is_empty() {
        println!("weights: none (run scripts/setup.sh)");
    } else {
        println!("weights:");
        for w in &info.weights {
            let name = w.path.file_name().unwrap_or_default().to_string_lossy();
            println!("  cache:{name}  {} bytes  sha256 {}", w.bytes, w.sha256);
        }
    }
    println!("extractors: {}", list(&info.extractors));
    println!("heads: {}", list(&info.heads));
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none registered".into()
    } else {
        names.join(", ")
    }
}

/// `furcate info --plugin PATH...`: what each plugin declares and provides.
fn plugins(args: &Args) -> Result<()> {
    let infos = args.plugin.iter().map(|p| plugin::inspect(p)).collect::<furcate_core::Result<Vec<_>>>()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    for p in &infos {
        println!("plugin {} {} ({})", p.name, p.version, p.path.display());
        println!("  sha256: {}", p.sha256);
        println!(
            "  built for: plugin ABI {}, furcate-core {}, {}, tch {}, libtorch {}",
            p.abi_version, p.core_version, p.rustc_version, p.tch_version, p.libtorch_version
        );
        println!("  heads: {}", list(&p.head_types));
    }
    Ok(())
}
