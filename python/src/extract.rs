//! Features without training: `furcate.extract` (through the feature cache,
//! as `furcate extract`) and `furcate.Extractor` (tensors in, tensors out).

use std::path::PathBuf;

use crate::tensor::PyTensor;
use furcate_core::config::LoadedConfig;
use furcate_core::data::Dataset;
use furcate_core::extractor::{ExtractorConfig, FeatureExtractor};
use furcate_core::run::{self, Features};
use pyo3::prelude::*;
use tch::{Kind, Tensor};

use crate::{err, PyProgress};

/// The rows' names, and each tap's features.
type Extracted = (Vec<String>, Vec<(String, PyTensor)>);

/// `furcate extract`: the features of the config's images (or of `images`,
/// files or folders), through the feature cache. Returns the rows' names (a
/// tiled config names each tile `<image>#<tile>`) and, per tap in the
/// config's order (only `taps` when given), a `[N, D_tap]` `f32` CPU tensor:
/// views of one block, no copies.
#[pyfunction]
#[pyo3(signature = (config, images=None, taps=None, progress=None))]
pub fn extract(
    config: PathBuf,
    images: Option<Vec<PathBuf>>,
    taps: Option<Vec<String>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Extracted> {
    let cfg = LoadedConfig::for_extraction(&config, images.is_none()).map_err(err)?;
    let data = match &images {
        None => Dataset::load(&cfg.config.data, &cfg.dir()),
        Some(paths) => Dataset::from_paths(paths),
    }
    .map_err(err)?;
    furcate_core::runtime::apply_config_threads(&cfg.config.runtime);
    let extractor = cfg.config.extractor.build(&cfg.build_context()).map_err(err)?;
    let Features { features, layout, plan, .. } =
        run::features_for(&cfg, extractor.as_ref(), &data, &mut PyProgress(progress)).map_err(err)?;
    let mut names = data.subset(&plan.image).names;
    if plan.tiled {
        for (r, name) in names.iter_mut().enumerate() {
            name.push_str(&format!("#{}", plan.tile_label(r)));
        }
    }
    let features = features.to_kind(Kind::Float);
    let available = layout.names();
    let wanted: Vec<String> = match taps {
        Some(t) => t,
        None => available.iter().map(|s| s.to_string()).collect(),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for name in wanted {
        let Some(i) = layout.index(&name) else {
            return Err(err(format!(
                "{}: taps: no tap named {name:?}; the extractor's taps are {}",
                config.display(),
                available.join(", ")
            )));
        };
        let (start, len) = layout.columns(&[i])[0];
        out.push((name, PyTensor(features.narrow(1, start, len))));
    }
    Ok((names, out))
}

/// A frozen extractor built from a config's `[extractor]` table, applied to
/// image tensors directly (no files, no cache).
#[pyclass(unsendable, module = "furcate._furcate")]
pub struct Extractor {
    config: Box<dyn ExtractorConfig>,
    extractor: Box<dyn FeatureExtractor>,
}

#[pymethods]
impl Extractor {
    /// Builds the extractor of the config file `config` (its `[data]` and
    /// `[[heads]]` may be left out), loading its weights.
    #[new]
    fn new(config: PathBuf) -> PyResult<Self> {
        let cfg = LoadedConfig::for_extraction(&config, false).map_err(err)?;
        furcate_core::runtime::apply_config_threads(&cfg.config.runtime);
        let extractor = cfg.config.extractor.build(&cfg.build_context()).map_err(err)?;
        Ok(Extractor { config: cfg.config.extractor, extractor })
    }

    /// Side of the square images it takes, in pixels.
    #[getter]
    fn size(&self) -> i64 {
        self.extractor.input_spec().size
    }

    /// Width `D` of one feature vector (every tap side by side).
    #[getter]
    fn dim(&self) -> i64 {
        self.extractor.output_dim()
    }

    /// Its taps, in feature order.
    #[getter]
    fn taps(&self) -> Vec<String> {
        self.config.tap_names()
    }

    /// SHA-256 of its weights file, if it has one.
    #[getter]
    fn weights_sha256(&self) -> Option<String> {
        self.extractor.weights_sha256()
    }

    /// The features of a batch, one block per tap (in [`Extractor::taps`]'s
    /// order), each `[N, D_tap]`, `f32`, on the CPU.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` (or `[N, size, size]`), floats in
    /// `[0, 1]`, any device.
    fn taps_of(&self, images: PyTensor) -> PyResult<Vec<PyTensor>> {
        let images = self.checked(images.0)?;
        let blocks = blocks(self.config.as_ref(), self.extractor.as_ref(), &images).map_err(err)?;
        Ok(blocks.into_iter().map(PyTensor).collect())
    }

    /// The features of a batch: every tap side by side, as `furcate extract`
    /// gives them.
    ///
    /// # Shapes
    /// `images`: `[N, 1 | 3, size, size]` (or `[N, size, size]`), floats in
    /// `[0, 1]`, any device -> `[N, D]`, `f32`, CPU.
    fn __call__(&self, images: PyTensor) -> PyResult<PyTensor> {
        let images = self.checked(images.0)?;
        let blocks = blocks(self.config.as_ref(), self.extractor.as_ref(), &images).map_err(err)?;
        let features = if blocks.len() == 1 {
            blocks.into_iter().next().unwrap_or_else(|| Tensor::zeros([0, 0], tch::kind::FLOAT_CPU))
        } else {
            Tensor::f_cat(&blocks, 1).map_err(err)?
        };
        Ok(PyTensor(features))
    }
}

impl Extractor {
    /// `[N, C, size, size]` floats, or an error naming what is wrong.
    fn checked(&self, images: Tensor) -> PyResult<Tensor> {
        let images = if images.dim() == 3 { images.unsqueeze(1) } else { images };
        let dims = images.size();
        let size = self.size();
        if dims.len() != 4 || dims[2] != size || dims[3] != size {
            return Err(err(format!(
                "images must be [N, C, {size}, {size}] (or [N, {size}, {size}]), floats in [0, 1]; got {dims:?}"
            )));
        }
        if !images.is_floating_point() {
            return Err(err(format!("images must be floats in [0, 1], got {:?}", images.kind())));
        }
        Ok(images)
    }
}

/// The per-tap features of `images`, as the feature cache fills them: an
/// extractor made of parts part by part, a tapped one by its taps, in
/// batches of its batch size.
fn blocks(
    config: &dyn ExtractorConfig,
    extractor: &dyn FeatureExtractor,
    images: &Tensor,
) -> furcate_core::Result<Vec<Tensor>> {
    if let (Some(configs), Some(parts)) = (config.parts(), extractor.parts()) {
        let mut out = Vec::new();
        for (c, e) in configs.iter().zip(parts) {
            out.extend(blocks(c.as_ref(), e.as_ref(), images)?);
        }
        return Ok(out);
    }
    if config.tap_config(0).is_none() {
        return Ok(vec![extractor.extract_all(images, &mut |_| {})?]);
    }
    let which: Vec<usize> = (0..config.tap_names().len()).collect();
    let n = images.size()[0];
    let bs = extractor.batch_size().max(1) as i64;
    let mut parts: Vec<Vec<Tensor>> = which.iter().map(|_| Vec::new()).collect();
    let mut start = 0;
    while start < n {
        let len = bs.min(n - start);
        for (p, t) in parts.iter_mut().zip(extractor.extract_taps(&images.narrow(0, start, len), &which)?) {
            p.push(t);
        }
        start += len;
    }
    Ok(parts.iter().map(|p| Tensor::cat(p, 0)).collect())
}
