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

/// Asserts that `ours` (one `[N, 2C]` block per tap, `pool = "mean_std"`)
/// matches the reference's `tap_<name>_mean` and `tap_<name>_std` to `tol`
/// relative ([`rel_err`]), tap by tap.
pub fn assert_taps_match(
    ours: &[Tensor],
    io: &HashMap<String, Tensor>,
    names: &[&str],
    tol: f64,
    what: &str,
) {
    assert_eq!(ours.len(), names.len(), "{what}: one block per tap");
    for (block, name) in ours.iter().zip(names) {
        let (mean, std) = (&io[&format!("tap_{name}_mean")], &io[&format!("tap_{name}_std")]);
        let c = mean.size()[1];
        assert_eq!(block.size(), [mean.size()[0], 2 * c], "{what}: tap {name}'s width");
        let err_mean = rel_err(&block.narrow(1, 0, c), mean);
        let err_std = rel_err(&block.narrow(1, c, c), std);
        eprintln!("{what}: tap {name}: mean {err_mean:e}, std {err_std:e}");
        assert!(
            err_mean <= tol && err_std <= tol,
            "{what}: tap {name}: mean {err_mean:e}, std {err_std:e} > {tol:e}"
        );
    }
}
