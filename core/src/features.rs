//! Feature files and the feature cache.
//!
//! The frozen extractor's features are a pure function of (extractor config,
//! weights, fit mode, image content), so furcate computes them once. The cache
//! is content-addressed: a folder per extractor key (a hash of its config, its
//! weights SHA-256 and the fit mode) holding shards, each a safetensors file
//! of feature rows with the SHA-256 of every row's image file in its metadata
//! and a checksum of the rows. A later run on any subset or superset of the
//! same images extracts only what is missing. A shard that fails its checks is
//! removed and its rows extracted again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{Kind, Tensor};

use crate::{fsutil, Error, Result};

/// Rows of features with a name per row and free-form metadata.
#[derive(Debug)]
pub struct FeatureFile {
    /// `[N, D]` features, `f32`.
    pub features: Tensor,
    /// One name per row (image file name, or image hash in the cache).
    pub names: Vec<String>,
    /// Further metadata (extractor, weights SHA-256, ...).
    pub metadata: HashMap<String, String>,
}

/// Writes features to a safetensors file atomically: tensor `features`
/// (`[N, D]`, f32) and metadata `names` (a JSON list) plus `metadata`,
/// with a SHA-256 of the feature bytes under `features_sha256`.
pub fn save_features(
    path: &Path,
    features: &Tensor,
    names: &[String],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes = to_bytes(features, names, metadata)?;
    fsutil::write_atomic(path, &bytes)
}

fn to_bytes(features: &Tensor, names: &[String], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let f = features.to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous();
    let shape: Vec<usize> = f.size().iter().map(|&d| d as usize).collect();
    if shape.len() != 2 || shape[0] != names.len() {
        return Err(Error::Invalid(format!("features {:?} do not match {} names", shape, names.len())));
    }
    let values = Vec::<f32>::try_from(f.view([-1]))?;
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut meta = metadata.clone();
    meta.insert("names".into(), serde_json::to_string(names).expect("strings serialise"));
    meta.insert("features_sha256".into(), fsutil::sha256_bytes(&raw));
    let view = TensorView::new(Dtype::F32, shape, &raw).map_err(|e| Error::Invalid(e.to_string()))?;
    safetensors::serialize([("features", view)], Some(meta)).map_err(|e| Error::Invalid(e.to_string()))
}

/// Reads a file written by [`save_features`], checking its structure and checksum.
pub fn load_features(path: &Path) -> Result<FeatureFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: String| Error::data(path, m);
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let view = st.tensor("features").map_err(|e| bad(format!("no `features` tensor: {e}")))?;
    if view.dtype() != Dtype::F32 || view.shape().len() != 2 {
        return Err(bad(format!("`features` is {:?} {:?}, expected F32 [N, D]", view.dtype(), view.shape())));
    }
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let names: Vec<String> = metadata
        .remove("names")
        .and_then(|s| serde_json::from_str(&s).ok())
        .ok_or_else(|| bad("metadata has no valid `names` list".into()))?;
    if names.len() != view.shape()[0] {
        return Err(bad(format!("{} names for {} rows", names.len(), view.shape()[0])));
    }
    if let Some(sum) = metadata.get("features_sha256") {
        if *sum != fsutil::sha256_bytes(view.data()) {
            return Err(bad("feature checksum mismatch: the file is corrupt".into()));
        }
    }
    let values: Vec<f32> =
        view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let shape = [view.shape()[0] as i64, view.shape()[1] as i64];
    Ok(FeatureFile { features: Tensor::from_slice(&values).view(shape), names, metadata })
}

/// The content-addressed feature cache of one extractor configuration.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
}

/// What [`FeatureCache::get_or_extract`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Rows found in the cache.
    pub hits: usize,
    /// Rows extracted now.
    pub extracted: usize,
}

impl FeatureCache {
    /// The cache for `key` under `root` (see [`FeatureCache::key`]).
    pub fn new(root: &Path, key: &str) -> Self {
        FeatureCache { dir: root.join(key) }
    }

    /// The folder of this cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A cache key: SHA-256 over the extractor's resolved config (JSON), its
    /// weights SHA-256 and how images are fitted.
    pub fn key(extractor_json: &str, weights_sha256: Option<&str>, fit: &str) -> String {
        let text =
            format!("furcate-features-v1\n{extractor_json}\n{}\n{fit}", weights_sha256.unwrap_or("none"));
        fsutil::sha256_bytes(text.as_bytes())[..32].to_string()
    }

    /// Every row this cache holds, by image hash. A shard that fails its
    /// checks is removed (its rows are then missing, and extracted again).
    pub fn known(&self) -> HashMap<String, Tensor> {
        let mut known: HashMap<String, Tensor> = HashMap::new();
        for shard in self.shards() {
            match load_features(&shard) {
                Ok(file) => {
                    for (i, name) in file.names.iter().enumerate() {
                        known.entry(name.clone()).or_insert_with(|| file.features.get(i as i64));
                    }
                }
                Err(e) => {
                    tracing::warn!("removing a corrupt feature cache shard: {e}");
                    let _ = std::fs::remove_file(&shard);
                }
            }
        }
        known
    }

    /// The indices of `hashes` that `known` lacks, each hash once.
    pub fn missing(known: &HashMap<String, Tensor>, hashes: &[String]) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        (0..hashes.len()).filter(|&i| !known.contains_key(&hashes[i]) && seen.insert(&hashes[i])).collect()
    }

    /// Stores `rows` (`[names.len(), D]`) as a new shard named by the hashes,
    /// and adds them to `known`.
    pub fn store(
        &self,
        known: &mut HashMap<String, Tensor>,
        names: Vec<String>,
        rows: &Tensor,
    ) -> Result<()> {
        if rows.size().first().copied() != Some(names.len() as i64) {
            return Err(Error::Invalid(format!(
                "extractor returned {:?} for {} images",
                rows.size(),
                names.len()
            )));
        }
        if names.is_empty() {
            return Ok(());
        }
        let shard =
            self.dir.join(format!("{}.safetensors", fsutil::sha256_bytes(names.join("\n").as_bytes())));
        save_features(&shard, rows, &names, &HashMap::new())?;
        for (j, name) in names.into_iter().enumerate() {
            known.insert(name, rows.get(j as i64));
        }
        Ok(())
    }

    /// The rows of `hashes` from `known`, stacked in that order.
    ///
    /// # Panics
    /// When a hash is not in `known` (call [`FeatureCache::store`] for the missing ones first).
    pub fn gather(known: &HashMap<String, Tensor>, hashes: &[String]) -> Tensor {
        let rows: Vec<Tensor> = hashes.iter().map(|h| known[h].shallow_clone()).collect();
        Tensor::stack(&rows, 0)
    }

    /// Features for images with content hashes `hashes`, in that order.
    /// Rows not cached are computed by `extract(rows)` (indices into
    /// `hashes`, returning `[rows.len(), D]`) and stored as a new shard.
    pub fn get_or_extract(
        &self,
        hashes: &[String],
        extract: impl FnOnce(&[usize]) -> Result<Tensor>,
    ) -> Result<(Tensor, CacheStats)> {
        let mut known = self.known();
        let missing = Self::missing(&known, hashes);
        let extracted = missing.len();
        if !missing.is_empty() {
            let rows = extract(&missing)?;
            let names: Vec<String> = missing.iter().map(|&i| hashes[i].clone()).collect();
            self.store(&mut known, names, &rows)?;
        }
        let hits = hashes.len() - extracted;
        Ok((Self::gather(&known, hashes), CacheStats { hits, extracted }))
    }

    fn shards(&self) -> Vec<PathBuf> {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards
    }
}
