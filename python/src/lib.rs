//! `furcate._furcate`: the Rust half of furcate's Python package.
//!
//! The pure-Python package `furcate` (python/furcate) wraps these functions:
//! it imports `torch` first (so this extension shares the libtorch of the
//! `torch` wheel, never loading its own), turns paths into strings, numpy
//! arrays into tensors without copying, CSV into pandas frames and progress
//! reports into tqdm bars. Every furcate error becomes a
//! `furcate.FurcateError` carrying furcate's own message (its file, line or
//! field).
#![deny(missing_docs)]

mod extract;
mod run;
mod tensor;

use std::path::PathBuf;

use crate::tensor::PyTensor;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
// Linked for its typetag registrations (`type = "ordinal"`, `type = "gaussian"`).
use furcate_heads as _;

create_exception!(
    _furcate,
    FurcateError,
    PyException,
    "A furcate error: its message names the file, line or field it is about."
);

/// A furcate error (or any error with a message) as a [`FurcateError`].
pub(crate) fn err(e: impl std::fmt::Display) -> PyErr {
    FurcateError::new_err(e.to_string())
}

/// Reports progress of long work to a Python object with the methods
/// `start(stage, total)`, `advance(done, message)` and `finish()`; errors
/// raised by them are printed, never propagated (progress is cosmetic).
pub(crate) struct PyProgress(pub Option<Py<PyAny>>);

impl PyProgress {
    fn call(&self, method: &str, args: impl for<'py> IntoPyObject<'py, Target = pyo3::types::PyTuple>) {
        let Some(obj) = &self.0 else { return };
        Python::with_gil(|py| {
            if let Err(e) = obj.call_method1(py, method, args) {
                e.print(py);
            }
        });
    }
}

impl furcate_core::progress::Progress for PyProgress {
    fn start(&mut self, stage: &str, total: u64) {
        self.call("start", (stage.to_string(), total));
    }
    fn advance(&mut self, done: u64, message: Option<&str>) {
        self.call("advance", (done, message.map(str::to_string)));
    }
    fn finish(&mut self) {
        self.call("finish", ());
    }
}

/// Generates a synthetic data set (PNGs and `manifest.csv`) in `out`:
/// the built-in `configs/synthetic.toml` (3500 images) or the generator
/// config `config`, with `seed` instead of the config's seed when given.
/// Returns the number of images written.
#[pyfunction]
#[pyo3(signature = (out, config=None, seed=None, force=false))]
fn generate(
    py: Python<'_>,
    out: PathBuf,
    config: Option<PathBuf>,
    seed: Option<u64>,
    force: bool,
) -> PyResult<usize> {
    let mut cfg = match &config {
        Some(path) => furcate_synth::SynthConfig::from_file(path).map_err(err)?,
        None => furcate_synth::SynthConfig::default(),
    };
    if let Some(seed) = seed {
        cfg.seed = seed;
        cfg.validate().map_err(|e| err(format!("seed: {e}")))?;
    }
    let summary =
        py.allow_threads(|| furcate_synth::write_dataset(&cfg, &out, force).map_err(|e| e.to_string()));
    summary.map(|s| s.images).map_err(|e| err(format!("generating {}: {e}", out.display())))
}

/// `furcate check`: the config and its data checked without training, as
/// JSON (the CLI's `check --json` document).
#[pyfunction]
fn check_json(py: Python<'_>, config: PathBuf) -> PyResult<String> {
    let report = py.allow_threads(|| furcate_core::check::check(&config));
    serde_json::to_string(&report).map_err(err)
}

/// The libtorch this process has loaded (read from `/proc/self/maps`): its
/// version, full version and folder, as JSON.
#[pyfunction]
fn libtorch_json() -> PyResult<String> {
    let l = furcate_core::runtime::libtorch().map_err(err)?;
    Ok(serde_json::json!({ "version": l.version, "full_version": l.full_version, "dir": l.dir }).to_string())
}

/// Sets libtorch's and furcate's CPU threads (`None`: `FURCATE_THREADS`,
/// else the cores this process may use); returns the count.
#[pyfunction]
#[pyo3(signature = (n=None))]
fn set_threads(n: Option<usize>) -> PyResult<usize> {
    furcate_core::runtime::set_threads(n).map_err(err)
}

/// The address of a tensor's data as libtorch sees it on the Rust side
/// (a check that tensors cross without copies).
#[pyfunction]
fn data_ptr(tensor: PyTensor) -> usize {
    tensor.0.data_ptr() as usize
}

/// Returns the tensor it is given, through libtorch on the Rust side (a
/// check that tensors cross both ways without copies).
#[pyfunction]
fn roundtrip(tensor: PyTensor) -> PyTensor {
    tensor
}

/// The extension module.
#[pymodule]
fn _furcate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FurcateError", m.py().get_type::<FurcateError>())?;
    m.add("__version__", furcate_core::VERSION)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(check_json, m)?)?;
    m.add_function(wrap_pyfunction!(libtorch_json, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(data_ptr, m)?)?;
    m.add_function(wrap_pyfunction!(roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(run::train, m)?)?;
    m.add_class::<run::Run>()?;
    m.add_function(wrap_pyfunction!(extract::extract, m)?)?;
    m.add_class::<extract::Extractor>()?;
    Ok(())
}
