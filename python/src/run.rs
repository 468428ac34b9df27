//! Training, and a finished run folder loaded back (`furcate.train`,
//! `furcate.open_run`, `furcate.Run`).

use std::path::PathBuf;

use furcate_core::config::LoadedConfig;
use furcate_core::run::{self, PredictOptions, RunResults, SavedRun, TrainOptions};
use pyo3::prelude::*;

use crate::{err, PyProgress};

/// `furcate train`: trains the heads the config declares, evaluates them and
/// writes the run folder `out` (default `runs/<config name>`); returns its
/// path. `progress` gets `start`/`advance`/`finish` calls. The GIL is
/// released while it trains.
#[pyfunction]
#[pyo3(signature = (config, out=None, folds=None, resume=false, force=false, report=true, wait=false, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    config: PathBuf,
    out: Option<PathBuf>,
    folds: Option<usize>,
    resume: bool,
    force: bool,
    report: bool,
    wait: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(config.file_stem().unwrap_or_default()));
    let result = py.allow_threads(move || -> Result<PathBuf, String> {
        let mut cfg = LoadedConfig::from_file(&config).map_err(|e| e.to_string())?;
        if let Some(k) = folds {
            if k < 2 {
                return Err(format!("folds must be at least 2, got {k}"));
            }
            cfg.config.training.folds = Some(k);
        }
        let opts = TrainOptions { out, resume, force, report, wait };
        let summary = run::train_run(&cfg, &opts, &mut PyProgress(progress)).map_err(|e| e.to_string())?;
        Ok(summary.dir)
    });
    result.map(|d| d.display().to_string()).map_err(err)
}

/// A finished run folder, loaded for scoring and prediction.
#[pyclass(unsendable, module = "furcate._furcate")]
pub struct Run {
    saved: SavedRun,
}

#[pymethods]
impl Run {
    /// Loads the run folder `path` (written by `furcate train`).
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        Ok(Run { saved: SavedRun::open(&path).map_err(err)? })
    }

    /// The run folder.
    #[getter]
    fn dir(&self) -> String {
        self.saved.dir.display().to_string()
    }

    /// The run's resolved configuration (TOML).
    #[getter]
    fn config_toml(&self) -> String {
        self.saved.state.config.clone()
    }

    /// `metrics.json`, read through furcate's typed results, as JSON.
    fn metrics_json(&self) -> PyResult<String> {
        let results = RunResults::read(&self.saved.dir).map_err(err)?;
        serde_json::to_string(&results).map_err(err)
    }

    /// `furcate predict`: the CSV text for the images (files or folders);
    /// `tta`: each image averaged over its `[data] augment` views (`--tta`).
    #[pyo3(signature = (images, probabilities=false, progress=None, tta=false))]
    fn predict_csv(
        &self,
        images: Vec<PathBuf>,
        probabilities: bool,
        progress: Option<Py<PyAny>>,
        tta: bool,
    ) -> PyResult<String> {
        let opts = PredictOptions { probabilities, tta, ..PredictOptions::default() };
        let predicted = self.saved.predict_table(&images, &opts, &mut PyProgress(progress)).map_err(err)?;
        Ok(predicted.csv)
    }

    /// `furcate eval --json`: the scores on the run's test part, or on the
    /// labelled manifest `manifest`.
    #[pyo3(signature = (manifest=None, progress=None))]
    fn evaluate_json(&self, manifest: Option<PathBuf>, progress: Option<Py<PyAny>>) -> PyResult<String> {
        let eval = self.saved.evaluate(manifest.as_deref(), &mut PyProgress(progress)).map_err(err)?;
        serde_json::to_string(&eval).map_err(err)
    }
}
