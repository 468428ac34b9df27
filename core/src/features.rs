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
//!
//! Many processes may fill one cache at once (the shards of a Slurm array on
//! a shared file system): each writes its own segment files, atomically
//! (temp file, fsync, rename), so a reader sees a segment whole or not at
//! all, and every segment finished before it lists the folder. A process
//! killed mid-write leaves only a hidden `.NAME.XXXXXX.tmp`, which no reader
//! takes for a segment. [`FeatureCache::compact`] folds a folder's segments
//! into one; a reader that loses a segment to it lists the folder again.
//! Each folder keeps what it is a cache of in `config.json`
//! ([`CacheDescription`]) for [`cache_info`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
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
    description: Option<CacheDescription>,
}

/// What one folder of the cache holds features of: its `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDescription {
    /// The extractor's resolved config, as JSON.
    pub extractor: String,
    /// The SHA-256 of its weights file, if it has one.
    pub weights_sha256: Option<String>,
    /// How images are fitted to the input size (JSON).
    pub fit: String,
}

/// The file in each cache folder that holds its [`CacheDescription`].
pub const DESCRIPTION_FILE: &str = "config.json";

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
        FeatureCache { dir: root.join(key), description: None }
    }

    /// The cache under `root` of an extractor's resolved config (JSON), its
    /// weights SHA-256 and fit mode (JSON); the first segment it stores also
    /// writes that description to the folder's `config.json`.
    pub fn for_config(root: &Path, description: CacheDescription) -> Self {
        let key = Self::key(&description.extractor, description.weights_sha256.as_deref(), &description.fit);
        FeatureCache { dir: root.join(key), description: Some(description) }
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
        self.read().1
    }

    /// The segments read and the rows they hold. A segment that vanished
    /// while it was read (folded into another by [`FeatureCache::compact`])
    /// makes it list the folder again (up to 20 times).
    fn read(&self) -> (Vec<PathBuf>, HashMap<String, Tensor>) {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut known: HashMap<String, Tensor> = HashMap::new();
            let mut read = Vec::new();
            let mut vanished = false;
            for shard in self.shards() {
                match load_features(&shard) {
                    Ok(file) => {
                        for (i, name) in file.names.iter().enumerate() {
                            known.entry(name.clone()).or_insert_with(|| file.features.get(i as i64));
                        }
                        read.push(shard);
                    }
                    Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                        vanished = true;
                    }
                    Err(e) => {
                        tracing::warn!("removing a corrupt feature cache shard: {e}");
                        let _ = std::fs::remove_file(&shard);
                    }
                }
            }
            if !vanished || tries >= 20 {
                return (read, known);
            }
        }
    }

    /// Folds this folder's segments into one (every row once, sorted by
    /// name), then removes the segments it read; segments written meanwhile
    /// are kept. Returns how many segments it removed.
    pub fn compact(&self) -> Result<usize> {
        let (read, known) = self.read();
        if read.len() < 2 {
            return Ok(0);
        }
        let mut names: Vec<String> = known.keys().cloned().collect();
        names.sort();
        let rows = Self::gather(&known, &names);
        let merged = self.segment_path(&names);
        save_features(&merged, &rows, &names, &HashMap::new())?;
        let mut removed = 0;
        for segment in read.iter().filter(|p| **p != merged) {
            match std::fs::remove_file(segment) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(segment, e)),
            }
        }
        Ok(removed)
    }

    fn segment_path(&self, names: &[String]) -> PathBuf {
        self.dir.join(format!("{}.safetensors", fsutil::sha256_bytes(names.join("\n").as_bytes())))
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
        save_features(&self.segment_path(&names), rows, &names, &HashMap::new())?;
        if let Some(d) = &self.description {
            let path = self.dir.join(DESCRIPTION_FILE);
            if !path.exists() {
                let text = serde_json::to_string_pretty(d).map_err(|e| Error::Invalid(e.to_string()))?;
                fsutil::write_atomic(&path, text.as_bytes())?;
            }
        }
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
        segments(&self.dir)
    }
}

/// The segment files of one cache folder, sorted (hidden temporary files left out).
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "safetensors")
                        && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    shards.sort();
    shards
}

/// One folder of a feature cache, as [`cache_info`] sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheFolder {
    /// The folder's name: the key of its extractor config ([`FeatureCache::key`]).
    pub key: String,
    /// What it is a cache of (`None` for a folder written before furcate recorded it).
    pub config: Option<CacheDescription>,
    /// Segment files.
    pub segments: usize,
    /// Distinct images (or tiles) it holds features of.
    pub entries: usize,
    /// Rows over all segments (more than `entries` when segments overlap).
    pub rows: usize,
    /// Bytes of its segments.
    pub bytes: u64,
    /// Segments that could not be read (a reader removes them).
    pub unreadable: Vec<PathBuf>,
    /// Temporary files left by writers that were killed mid-write (or are writing now).
    pub temporary: usize,
}

/// A whole feature cache, as `furcate cache info` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The cache's root folder.
    pub dir: PathBuf,
    /// One entry per extractor config, sorted by key.
    pub folders: Vec<CacheFolder>,
}

/// What the feature cache under `root` holds, read from the segments'
/// headers only (the features themselves are not read).
pub fn cache_info(root: &Path) -> Result<CacheInfo> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut folders = Vec::new();
    for dir in dirs {
        let key = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let config =
            std::fs::read(dir.join(DESCRIPTION_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let mut folder = CacheFolder {
            key,
            config,
            segments: 0,
            entries: 0,
            rows: 0,
            bytes: 0,
            unreadable: Vec::new(),
            temporary: 0,
        };
        let mut names = std::collections::HashSet::new();
        for segment in segments(&dir) {
            match segment_names(&segment) {
                Ok(n) => {
                    folder.segments += 1;
                    folder.rows += n.len();
                    folder.bytes += std::fs::metadata(&segment).map(|m| m.len()).unwrap_or(0);
                    names.extend(n);
                }
                Err(_) => folder.unreadable.push(segment),
            }
        }
        folder.entries = names.len();
        folder.temporary = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with('.') && n.ends_with(".tmp")
                    })
                    .count()
            })
            .unwrap_or(0);
        if folder.segments > 0 || !folder.unreadable.is_empty() || folder.temporary > 0 {
            folders.push(folder);
        }
    }
    Ok(CacheInfo { dir: root.to_path_buf(), folders })
}

/// The row names of a segment, from its header alone.
fn segment_names(path: &Path) -> Result<Vec<String>> {
    use std::io::Read as _;
    let bad = |m: &str| Error::data(path, m.to_string());
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > 1 << 30 {
        return Err(bad("not a safetensors file (header too large)"));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__")]
        metadata: HashMap<String, String>,
    }
    let header: Header = serde_json::from_slice(&header).map_err(|_| bad("not a safetensors header"))?;
    let names = header.metadata.get("names").ok_or_else(|| bad("metadata has no `names` list"))?;
    serde_json::from_str(names).map_err(|_| bad("metadata has no valid `names` list"))
}
