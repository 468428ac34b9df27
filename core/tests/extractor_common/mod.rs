//! Helpers shared by the extractor tests: the reference Python scripts and
//! the comparison metric.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::runtime::DeviceSpec;
use tch::Tensor;

/// `$FURCATE_PYTHON` when it can import all of `modules`; otherwise prints why
/// the calling test skips and returns `None`.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let Some(py) = std::env::var_os("FURCATE_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!("SKIPPED: FURCATE_PYTHON is not set (run `eval \"$(scripts/setup.sh --test)\"`)");
        return None;
    };
    let probe = Command::new(&py).arg("-c").arg(format!("import {}", modules.join(", "))).output();
    match probe {
        Ok(o) if o.status.success() => Some(PathBuf::from(py)),
        Ok(o) => {
            eprintln!(
                "SKIPPED: {py:?} cannot import {modules:?}: {}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run {py:?}: {e}");
            None
        }
    }
}

/// Runs `core/tests/python/<script>` with `args` (after the output folder) and
/// returns the folder it wrote into. Panics with its stderr when it fails.
pub fn run_reference(py: &Path, script: &str, args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let out = Command::new(py).arg(&script).arg(dir.path()).args(args).output().expect("run python");
    assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    dir
}

/// All tensors of a safetensors file.
pub fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).expect("read safetensors").into_iter().collect()
}

/// The parity metric: max |ours - reference| / max |reference|, i.e. the
/// largest error relative to the reference's scale (robust to entries near 0).
pub fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.size(), reference.size(), "shapes differ");
    let diff = (ours - reference).abs().max().double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    assert!(scale > 0.0, "the reference is all zeros");
    diff / scale
}

/// A CPU, f32 config for `weights` at `size`.
pub fn cpu_config(weights: Option<PathBuf>, size: i64) -> BackboneConfig {
    BackboneConfig { weights, size, device: DeviceSpec::Cpu, ..Default::default() }
}
