//! The trained model on disk: `checkpoint/model.safetensors` (trunk and heads)
//! and `checkpoint/state.json` (resolved config, what each head fitted, the
//! split, the weights SHA-256), both written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::data::split::Split;
use crate::head::HeadState;
use crate::train::{Resume, ResumeInfo};
use crate::{fsutil, Error, Result};

/// What a saved run needs besides its tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// furcate version that wrote it.
    pub furcate_version: String,
    /// The resolved configuration, as TOML.
    pub config: String,
    /// Folder the original configuration lived in (relative paths in it are from there).
    pub config_dir: PathBuf,
    /// Per head, in model order: name and fitted state (class names, target scaling, ...).
    pub heads: Vec<(String, HeadState)>,
    /// Width of the features the model takes.
    pub in_dim: i64,
    /// SHA-256 of the extractor's weights file, if it has one.
    pub weights_sha256: Option<String>,
    /// The split, as row indices of the data set.
    pub split: Split,
    /// SHA-256 of the manifest the split refers to.
    pub data_sha256: Option<String>,
    /// Best epoch (the weights kept) and epochs run.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// The head plugins the run was trained with (none for older runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<crate::plugin::PluginRecord>,
    /// What the run chose by validation (taps, weight decay); absent in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<super::choose::Choices>,
}

/// Saves the model variables and the state into `dir` (created if needed).
pub fn save(dir: &Path, vs: &nn::VarStore, state: &CheckpointState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    save_tensors(&dir.join("model.safetensors"), &named)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
    fsutil::write_atomic(&dir.join("state.json"), &json)
}

/// Reads `state.json` of a checkpoint folder.
pub fn load_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(&path, format!("not a furcate checkpoint: {e}")))
}

/// Loads `model.safetensors` into the variables of `vs`.
pub fn load_model(dir: &Path, vs: &mut nn::VarStore) -> Result<()> {
    let path = dir.join("model.safetensors");
    let tensors = load_tensors(&path)?;
    let mut vars = vs.variables();
    let mut missing = Vec::new();
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            match tensors.get(name) {
                Some(t) if t.size() == var.size() => var.copy_(t),
                _ => missing.push(name.clone()),
            }
        }
    });
    if !missing.is_empty() {
        missing.sort();
        let listed = crate::error::abridged(&missing, ", ");
        return Err(Error::data(
            &path,
            format!("{} missing or misshapen tensor(s): {listed}", missing.len()),
        ));
    }
    Ok(())
}

/// Writes named tensors as safetensors atomically ([`fsutil::write_atomic_with`]).
pub fn save_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    fsutil::write_atomic_with(path, |_, tmp| {
        Tensor::write_safetensors(&cpu, tmp).map_err(|e| Error::data(path, e.to_string()))
    })
}

/// Reads all tensors of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let list = Tensor::read_safetensors(path).map_err(|e| Error::data(path, format!("unreadable: {e}")))?;
    Ok(list.into_iter().collect())
}

/// Resumable training snapshots: one file, `resume.safetensors`, holding the
/// variables, the best variables, the optimiser state and the progress info
/// (as a byte tensor), so that a kill at any moment leaves either the previous
/// snapshot or the new one.
#[derive(Debug)]
pub struct ResumeFiles {
    path: PathBuf,
    pending: Option<Resume>,
}

impl ResumeFiles {
    /// Snapshots kept in `dir`.
    pub fn new(dir: &Path) -> Self {
        ResumeFiles { path: dir.join("resume.safetensors"), pending: None }
    }

    /// Loads the last snapshot for [`train`](crate::train::train) to continue
    /// from; false when there is none.
    pub fn resume(&mut self) -> Result<bool> {
        self.pending = self.load()?;
        Ok(self.pending.is_some())
    }

    fn load(&self) -> Result<Option<Resume>> {
        if !self.path.exists() {
            return Ok(None);
        }
        let mut tensors = load_tensors(&self.path)?;
        let info = tensors
            .remove("resume_info")
            .and_then(|t| Vec::<u8>::try_from(t).ok())
            .and_then(|bytes| serde_json::from_slice::<ResumeInfo>(&bytes).ok())
            .ok_or_else(|| Error::data(&self.path, "corrupt resume snapshot: no readable progress info"))?;
        Ok(Some(Resume { tensors, info }))
    }
}

impl crate::train::Checkpointer for ResumeFiles {
    fn save(&mut self, tensors: Vec<(String, Tensor)>, info: &ResumeInfo) -> Result<()> {
        let json = serde_json::to_vec(info).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut tensors = tensors;
        tensors.push(("resume_info".into(), Tensor::from_slice(&json)));
        save_tensors(&self.path, &tensors)
    }

    fn take_resume(&mut self) -> Option<Resume> {
        self.pending.take()
    }
}
