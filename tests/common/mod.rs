//! Helpers shared by the integration tests that drive the `furcate` binary.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `furcate` binary, run without `LD_LIBRARY_PATH` (it must find
/// libtorch through its rpath).
pub fn furcate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_furcate"));
    c.env_remove("LD_LIBRARY_PATH");
    c
}

/// Runs `furcate --quiet ARGS...` to completion.
pub fn run(args: &[&str]) -> Output {
    furcate().arg("--quiet").args(args).output().expect("the binary runs")
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small synthetic data set in `dir/data`: `morphologies` x 2 volume
/// fractions x `per_class` images of 32 px; returns its manifest.
pub fn dataset(dir: &Path, morphologies: usize, per_class: usize) -> PathBuf {
    let mut cfg = furcate_synth::SynthConfig {
        size: 32,
        images_per_class: per_class,
        volume_fractions: vec![0.1, 0.4],
        ..Default::default()
    };
    cfg.morphologies.truncate(morphologies);
    let out = dir.join("data");
    furcate_synth::write_dataset(&cfg, &out, false).unwrap();
    out.join(furcate_synth::MANIFEST_FILE)
}
