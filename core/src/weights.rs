//! The per-user cache of pretrained weights that `scripts/setup.sh` fills.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{fsutil, Result};

/// The furcate cache folder: `$FURCATE_CACHE`, else `$XDG_CACHE_HOME/furcate`,
/// else `~/.cache/furcate`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FURCATE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("furcate");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("furcate")
}

/// The folder of pretrained weights in the cache (`cache:NAME` in configs).
pub fn weights_dir() -> PathBuf {
    cache_dir().join("weights")
}

/// One weights file in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeightsFile {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content.
    pub sha256: String,
}

/// The `.safetensors` files of a weights folder, sorted by name.
pub fn list_weights(dir: &Path) -> Result<Vec<WeightsFile>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).map_err(|e| crate::Error::io(&path, e))?.len();
            let sha256 = fsutil::sha256_file(&path)?;
            Ok(WeightsFile { path, bytes, sha256 })
        })
        .collect()
}
