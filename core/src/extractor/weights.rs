//! Loading a `.safetensors` weights file into a network's `VarStore`, checking
//! every tensor first.
//!
//! The file is read once: its SHA-256 is taken from the same bytes the tensors
//! come from. Every variable of the network must be in the file with the same
//! shape and a floating-point dtype; otherwise one [`Error::Weights`] counts
//! the missing tensors, wrong shapes and wrong dtypes at once, naming the
//! first few of each ([`crate::error::abridged`]). Values are
//! converted to the variable's dtype (an f16 or bf16 file fills an f32 network
//! with f32 values). Tensors of the file that the network has no use for are
//! left out: `num_batches_tracked` always, and those under the prefixes the
//! caller names (`fc.` for a headless ResNet50) silently; any other is named
//! in a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::abridged;
use crate::{fsutil, Error, Result};

/// Which tensor names a network can do without, by name prefix.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyRules<'a> {
    /// File tensors under these prefixes are not needed and left out without a word
    /// (e.g. `fc.` for a network built without its classifier).
    pub unused_ok: &'a [&'a str],
    /// Network variables under these prefixes may be absent from the file; they
    /// keep their initial values and are listed in [`LoadedWeights::absent_optional`].
    /// When some but not all of a prefix's variables are present, the absent ones are errors.
    pub optional: &'a [&'a str],
}

/// What was loaded from a weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedWeights {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
    /// How many of the network's variables were filled from it.
    pub loaded: usize,
    /// The file's dtypes among the loaded tensors (`F32`, `F16`, ...).
    pub dtypes: BTreeSet<String>,
    /// Tensors of the file that the network does not use.
    pub unused: Vec<String>,
    /// Optional variables of the network that the file does not hold.
    pub absent_optional: Vec<String>,
}

/// One tensor as the safetensors header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Its name.
    pub name: String,
    /// Its dtype as written in the file (`F32`, `F16`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Byte range of its data, relative to the start of the data section.
    pub offsets: (usize, usize),
}

/// A safetensors file read into memory, its header checked.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    entries: BTreeMap<String, TensorEntry>,
}

/// Bytes per element and the tch kind of a safetensors dtype.
fn dtype_info(dtype: &str) -> Option<(usize, Kind)> {
    Some(match dtype {
        "F64" => (8, Kind::Double),
        "F32" => (4, Kind::Float),
        "F16" => (2, Kind::Half),
        "BF16" => (2, Kind::BFloat16),
        "I64" => (8, Kind::Int64),
        "I32" => (4, Kind::Int),
        "I16" => (2, Kind::Int16),
        "I8" => (1, Kind::Int8),
        "U8" => (1, Kind::Uint8),
        "BOOL" => (1, Kind::Bool),
        _ => return None,
    })
}

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

impl SafetensorsFile {
    /// Reads and checks a safetensors file: that it exists, that its header is
    /// one, and that every tensor's bytes are inside the file (a truncated file fails here).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound
                && path.starts_with(crate::weights::weights_dir())
            {
                " (files of the weights cache are made by scripts/setup.sh)"
            } else {
                ""
            };
            Error::weights(path, format!("cannot read it: {e}{hint}"))
        })?;
        let bad = |message: String| Error::weights(path, message);
        let not_st = "is not a safetensors file";
        if bytes.len() < 8 {
            return Err(bad(format!("{not_st}: only {} bytes, too short for a header", bytes.len())));
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if header_len > MAX_HEADER {
            return Err(bad(format!("{not_st}: its first 8 bytes give a header of {header_len} bytes")));
        }
        let data_start = 8 + header_len as usize;
        if data_start > bytes.len() {
            return Err(bad(format!(
                "is truncated (or not safetensors): its header needs {header_len} bytes after the first 8, \
                 the file has {}",
                bytes.len()
            )));
        }
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start])
                .map_err(|e| bad(format!("{not_st}: its header is not a JSON object ({e})")))?;
        let data_len = bytes.len() - data_start;
        let mut entries = BTreeMap::new();
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&name, &value)
                .map_err(|m| bad(format!("{not_st}: header entry `{name}`: {m}")))?;
            let (start, end) = entry.offsets;
            if end > data_len {
                return Err(bad(format!(
                    "is truncated: tensor `{name}` needs bytes {start}..{end} of the data section, \
                     which holds only {data_len}"
                )));
            }
            entries.insert(name, entry);
        }
        Ok(SafetensorsFile { path: path.to_path_buf(), bytes, data_start, entries })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the file's content, lowercase hex.
    pub fn sha256(&self) -> String {
        fsutil::sha256_bytes(&self.bytes)
    }

    /// The tensors the header lists, by name.
    pub fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.entries
    }

    /// One tensor, in its file dtype, on the CPU.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| Error::weights(&self.path, format!("holds no tensor `{name}`")))?;
        let (_, kind) = dtype_info(&entry.dtype).ok_or_else(|| {
            Error::weights(
                &self.path,
                format!("tensor `{name}` has dtype {}, which furcate cannot read", entry.dtype),
            )
        })?;
        let (start, end) = entry.offsets;
        let data = &self.bytes[self.data_start + start..self.data_start + end];
        Tensor::f_from_data_size(data, &entry.shape, kind)
            .map_err(|e| Error::weights(&self.path, format!("tensor `{name}`: {e}")))
    }
}

fn parse_entry(name: &str, value: &serde_json::Value) -> std::result::Result<TensorEntry, String> {
    let dtype = value.get("dtype").and_then(|d| d.as_str()).ok_or("no dtype")?.to_string();
    let shape = value
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or("no shape")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| i64::try_from(d).ok()).ok_or("a dimension is not a count"))
        .collect::<std::result::Result<Vec<i64>, _>>()?;
    let offsets = value.get("data_offsets").and_then(|o| o.as_array()).ok_or("no data_offsets")?;
    let (start, end) = match offsets.as_slice() {
        [a, b] => {
            (a.as_u64().ok_or("bad data_offsets")? as usize, b.as_u64().ok_or("bad data_offsets")? as usize)
        }
        _ => return Err("data_offsets is not [begin, end]".into()),
    };
    if start > end {
        return Err(format!("data_offsets [{start}, {end}] run backwards"));
    }
    if let Some((size, _)) = dtype_info(&dtype) {
        let numel: u128 = shape.iter().map(|&d| d as u128).product();
        if numel * size as u128 != (end - start) as u128 {
            return Err(format!(
                "shape {shape:?} of {dtype} needs {} bytes, data_offsets give {}",
                numel * size as u128,
                end - start
            ));
        }
    }
    Ok(TensorEntry { name: name.to_string(), dtype, shape, offsets: (start, end) })
}

fn is_float(dtype: &str) -> bool {
    matches!(dtype, "F64" | "F32" | "F16" | "BF16")
}

fn shape_str(shape: &[i64]) -> String {
    format!("{shape:?}")
}

/// Checks that `path` fits every variable of `vs`, then copies its values in
/// (converted to each variable's dtype and device, under no-grad).
///
/// Nothing is copied unless everything fits: a missing tensor, a wrong shape
/// or a non-float dtype gives one [`Error::Weights`] that counts all of them
/// and names the first few of each kind.
pub fn load_into(vs: &VarStore, path: &Path, rules: KeyRules<'_>) -> Result<LoadedWeights> {
    let file = SafetensorsFile::open(path)?;
    let vars = vs.variables();
    let under = |name: &str, prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));

    // Optional prefixes are skipped only when the file holds none of their tensors.
    let skipped_prefixes: Vec<&str> =
        rules.optional.iter().copied().filter(|p| !file.entries.keys().any(|k| k.starts_with(p))).collect();

    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut wrong_dtype = Vec::new();
    let mut absent_optional = Vec::new();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        let var = &vars[*name];
        match file.entries.get(*name) {
            None if under(name, &skipped_prefixes) => absent_optional.push((*name).clone()),
            None => missing.push((*name).clone()),
            Some(entry) => {
                if entry.shape != var.size() {
                    wrong_shape.push(format!(
                        "{name} is {} in the file, the network wants {}",
                        shape_str(&entry.shape),
                        shape_str(&var.size())
                    ));
                } else if !is_float(&entry.dtype) {
                    wrong_dtype.push(format!("{name} is {}", entry.dtype));
                }
            }
        }
    }

    if !missing.is_empty() || !wrong_shape.is_empty() || !wrong_dtype.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("{} tensor(s) missing: {}", missing.len(), abridged(&missing, ", ")));
        }
        if !wrong_shape.is_empty() {
            parts.push(format!(
                "{} with the wrong shape: {}",
                wrong_shape.len(),
                abridged(&wrong_shape, "; ")
            ));
        }
        if !wrong_dtype.is_empty() {
            parts.push(format!("{} not floating-point: {}", wrong_dtype.len(), abridged(&wrong_dtype, ", ")));
        }
        let mut message = format!("does not fit the network: {}", parts.join("; "));
        if missing.len() == names.len() {
            message.push_str(" (no tensor name matches: is it a weights file of another network?)");
        }
        return Err(Error::weights(path, message));
    }

    let mut dtypes = BTreeSet::new();
    let mut loaded = 0;
    for name in names {
        let Some(entry) = file.entries.get(name) else { continue };
        let value = file.tensor(name)?;
        let mut var = vars[name].shallow_clone();
        tch::no_grad(|| var.f_copy_(&value))
            .map_err(|e| Error::weights(path, format!("copying `{name}` into the network: {e}")))?;
        dtypes.insert(entry.dtype.clone());
        loaded += 1;
    }

    let unused: Vec<String> = file.entries.keys().filter(|k| !vars.contains_key(*k)).cloned().collect();
    let mut surprising: Vec<String> = unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked") && !under(k, rules.unused_ok))
        .cloned()
        .collect();
    surprising.sort();
    if !surprising.is_empty() {
        tracing::warn!(
            "weights file {}: {} tensor(s) the network does not use, left out: {}",
            path.display(),
            surprising.len(),
            abridged(&surprising, ", ")
        );
    }
    Ok(LoadedWeights {
        path: path.to_path_buf(),
        sha256: file.sha256(),
        loaded,
        dtypes,
        unused,
        absent_optional,
    })
}
