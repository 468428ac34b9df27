//! Fixtures shared by furcate-core's tests: the reference Python scripts and
//! the skip rule for a missing reference, the comparison metric, running a
//! test alone in its own process, and the toy training problems' set-up.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use furcate_core::config::RunConfig;
use furcate_core::extractor::frozen::BackboneConfig;
use furcate_core::head::Targets;
use furcate_core::model::MultiHeadModel;
use furcate_core::runtime::DeviceSpec;
use furcate_core::HeadState;
use tch::Tensor;

#[path = "skip.rs"]
mod skip_rule;

/// [`skip_rule::skip_unless_ci`] for a reference that the test set-up installs.
pub fn skip(why: &str) {
    skip_rule::skip_unless_ci(why, "`eval \"$(scripts/setup.sh --test)\"`");
}

/// `$FURCATE_PYTHON` when it can import all of `modules`; otherwise [`skip`]s
/// (a failure under CI) and returns `None`.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let Some(py) = std::env::var_os("FURCATE_PYTHON").filter(|p| !p.is_empty()) else {
        skip("FURCATE_PYTHON is not set");
        return None;
    };
    let probe = Command::new(&py).arg("-c").arg(format!("import {}", modules.join(", "))).output();
    match probe {
        Ok(o) if o.status.success() => Some(PathBuf::from(py)),
        Ok(o) => {
            skip(&format!(
                "{py:?} cannot import {modules:?}: {}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default()
            ));
            None
        }
        Err(e) => {
            skip(&format!("cannot run {py:?}: {e}"));
            None
        }
    }
}

/// The environment variable that marks a child process of [`alone`] and
/// names the one test it runs.
const ALONE: &str = "FURCATE_TEST_ALONE";

/// Runs `test` (its path in this harness, `module::name`) alone in a fresh
/// process of this harness, for a test that needs the process to itself:
/// libtorch's random generator is global, so a test that seeds it and
/// expects the same draws twice must not share it with tests on other
/// threads; nor may a test that sets an environment variable. Returns
/// `true` in that child (the caller runs its body) and `false` in the
/// calling process once the child has passed (the caller returns); the
/// child's output is passed on, and its failure fails the caller. Use
/// [`alone!`](crate::alone), which names the calling test.
pub fn alone(test: &str) -> bool {
    if std::env::var(ALONE).is_ok_and(|t| t == test) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs again");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test}, run alone, failed:\n{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{test}: no such test in this harness:\n{stdout}");
    eprint!("{stderr}");
    false
}

/// Runs the calling test alone in its own process ([`common::alone`](crate::common::alone)):
/// `if !alone!() { return; }` as its first line.
#[macro_export]
macro_rules! alone {
    () => {{
        fn here() {}
        // `tests::module::test::here` -> `module::test`
        let path = std::any::type_name_of_val(&here);
        let test = path.strip_suffix("::here").and_then(|p| p.split_once("::")).map(|(_, t)| t);
        $crate::common::alone(test.expect("a test's path"))
    }};
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

/// Label cells as a head reads them (none missing).
fn cells(column: &[String]) -> Vec<Option<&str>> {
    column.iter().map(|s| Some(s.as_str())).collect()
}

/// The state of each head of `config` fitted on its label column (`columns`,
/// in the heads' order).
pub fn fit_states(config: &RunConfig, columns: &[Vec<String>]) -> Vec<HeadState> {
    config.heads.iter().zip(columns).map(|(h, c)| h.fit(&cells(c)).unwrap()).collect()
}

/// The targets of `model`'s heads for the rows `rows` of their label columns.
pub fn encode_rows(
    model: &MultiHeadModel,
    columns: &[Vec<String>],
    rows: std::ops::Range<usize>,
) -> Vec<Targets> {
    model.heads().iter().zip(columns).map(|(h, c)| h.encode(&cells(&c[rows.clone()])).unwrap()).collect()
}
