//! Loading plugins: opening a library, checking its declaration before
//! anything of it is called, letting it register, and the set of a run's
//! plugins with the head types they provide. A loaded library is never
//! unloaded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::abi::{
    FfiStr, HeadFactory, PluginDeclaration, PluginFailure, Registrar, ABI_VERSION, DECLARATION_SYMBOL,
    LIBTORCH_VERSION, MAGIC, RUSTC_VERSION, TCH_VERSION,
};
use crate::{fsutil, Error, Result};

/// What a plugin declared about itself, and what it provides.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginInfo {
    /// The library file as loaded (absolute).
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// Plugin ABI version.
    pub abi_version: u32,
    /// furcate-core version it was built against.
    pub core_version: String,
    /// rustc that built it.
    pub rustc_version: String,
    /// tch version.
    pub tch_version: String,
    /// libtorch version.
    pub libtorch_version: String,
    /// The head `type`s it registers, sorted.
    pub head_types: Vec<String>,
}

/// A loaded plugin. Its library stays loaded for the rest of the process.
pub struct LoadedPlugin {
    /// What it declared and provides.
    pub info: PluginInfo,
    _library: ManuallyDrop<libloading::Library>,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin").field("info", &self.info).finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// `file (name version)`, for messages.
    pub(super) fn label(&self) -> String {
        format!("{} ({} {})", self.info.file_name, self.info.name, self.info.version)
    }

    /// An [`Error::Plugin`] about this plugin's file.
    pub(super) fn error(&self, message: impl Into<String>) -> Error {
        Error::Plugin { path: self.info.path.clone(), message: message.into() }
    }

    /// The [`Error`] for a failure of this plugin's code during `what`.
    pub(super) fn failure(&self, what: &str, f: PluginFailure) -> Error {
        match f {
            PluginFailure { label: Some(index), panicked: false, message } => Error::Label { index, message },
            PluginFailure { panicked: true, message, .. } => self.error(format!(
                "plugin {} {} panicked in {what}: {message}",
                self.info.name, self.info.version
            )),
            PluginFailure { message, .. } => self.error(format!(
                "plugin {} {} failed in {what}: {message}",
                self.info.name, self.info.version
            )),
        }
    }
}

/// The record of a plugin kept in a run's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The library file as loaded (absolute).
    pub path: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// The plugins of a run and the head types they registered.
#[derive(Clone, Default)]
pub struct PluginSet {
    plugins: Vec<Arc<LoadedPlugin>>,
    pub(super) heads: BTreeMap<String, (Arc<LoadedPlugin>, HeadFactory)>,
}

impl fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSet")
            .field("plugins", &self.plugins.iter().map(|p| &p.info.path).collect::<Vec<_>>())
            .field("heads", &self.heads.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Default)]
struct Collector {
    heads: Vec<(String, HeadFactory)>,
}

impl Registrar for Collector {
    fn register_head(&mut self, type_name: &str, factory: HeadFactory) {
        self.heads.push((type_name.to_string(), factory));
    }
}

/// Loads one plugin: checks its declaration, then lets it register.
fn open(path: &Path) -> Result<(LoadedPlugin, Vec<(String, HeadFactory)>)> {
    let plugin_error = |message: String| Error::Plugin { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(plugin_error("no such plugin file".into()));
    }
    // An absolute path: the loader must not search its library paths.
    let path = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let sha256 = fsutil::sha256_file(&path)?;
    // SAFETY: loading runs the library's initialisers; only files the user
    // named are loaded.
    let library = unsafe { libloading::Library::new(&path) }
        .map_err(|e| plugin_error(format!("not a loadable library: {e}")))?;
    let symbol = format!("{DECLARATION_SYMBOL}\0");
    // SAFETY: the symbol is only read as bytes until its magic is checked.
    let declaration: *const PluginDeclaration =
        match unsafe { library.get::<*const PluginDeclaration>(symbol.as_bytes()) } {
            Ok(s) => *s,
            Err(_) => {
                return Err(plugin_error(format!(
                    "not a furcate plugin: it exports no `{DECLARATION_SYMBOL}` (build it with \
                     furcate_plugin::export_plugin!)"
                )))
            }
        };
    // SAFETY: the symbol names a static of at least the magic's size in a
    // furcate plugin; the magic is checked before any other field is read.
    let magic = unsafe { std::ptr::read_unaligned(declaration.cast::<[u8; 16]>()) };
    if magic != MAGIC {
        return Err(plugin_error("not a furcate plugin: its declaration has the wrong magic".into()));
    }
    // SAFETY: the magic matched; the fields up to `libtorch_version` have the
    // same layout in every ABI version.
    let d = unsafe { &*declaration };
    let read = |s: &FfiStr| unsafe { s.read() }.unwrap_or_else(|| "(unreadable)".into());
    let mut info = PluginInfo {
        file_name: path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        path: path.clone(),
        sha256,
        name: String::new(),
        version: String::new(),
        abi_version: d.abi_version,
        core_version: read(&d.core_version),
        rustc_version: read(&d.rustc_version),
        tch_version: read(&d.tch_version),
        libtorch_version: read(&d.libtorch_version),
        head_types: Vec::new(),
    };
    let mut wrong = Vec::new();
    let mut compare = |what: &str, plugin: &str, host: &str| {
        if plugin != host {
            wrong.push(format!("{what} {plugin} (this furcate: {host})"));
        }
    };
    compare("plugin ABI", &info.abi_version.to_string(), &ABI_VERSION.to_string());
    compare("furcate-core", &info.core_version, crate::VERSION);
    compare("rustc", &info.rustc_version, RUSTC_VERSION);
    compare("tch", &info.tch_version, TCH_VERSION);
    compare("libtorch", &info.libtorch_version, LIBTORCH_VERSION);
    if !wrong.is_empty() {
        return Err(plugin_error(format!(
            "incompatible plugin, built for {}; rebuild it against this furcate",
            wrong.join(", ")
        )));
    }
    if !d.panic_unwind {
        return Err(plugin_error(
            "built with panic = \"abort\": furcate needs plugins built with panic = \"unwind\"".into(),
        ));
    }
    info.name = read(&d.name);
    info.version = read(&d.version);
    let mut collector = Collector::default();
    (d.register)(&mut collector).map_err(|f| {
        let how = if f.panicked { "panicked while registering" } else { "failed to register" };
        plugin_error(format!("plugin {} {} {how}: {}", info.name, info.version, f.message))
    })?;
    let mut types = BTreeSet::new();
    for (t, _) in &collector.heads {
        if t.trim().is_empty() || !types.insert(t.clone()) {
            return Err(plugin_error(format!("registers the head type `{t}` twice or with an empty name")));
        }
    }
    info.head_types = types.into_iter().collect();
    Ok((LoadedPlugin { info, _library: ManuallyDrop::new(library) }, collector.heads))
}

/// Loads one plugin on its own and tells what it provides (`furcate info --plugin`).
pub fn inspect(path: &Path) -> Result<PluginInfo> {
    Ok(open(path)?.0.info)
}

impl PluginSet {
    /// Loads the plugins at `paths`, in order.
    pub fn load(paths: &[PathBuf]) -> Result<PluginSet> {
        let mut set = PluginSet::default();
        for p in paths {
            set.add(p)?;
        }
        Ok(set)
    }

    /// Loads one more plugin; its head types must be new (not built in, not
    /// registered by another plugin of the set).
    pub fn add(&mut self, path: &Path) -> Result<Arc<LoadedPlugin>> {
        let (plugin, heads) = open(path)?;
        if let Some(same) = self.plugins.iter().find(|p| p.info.path == plugin.info.path) {
            return Err(plugin.error(format!("listed twice (as {})", same.info.path.display())));
        }
        let builtin = crate::registry::head_types();
        let plugin = Arc::new(plugin);
        for (t, _) in &heads {
            if builtin.contains(t) {
                return Err(plugin.error(format!(
                    "plugin {} registers the head type `{t}`, which is built into furcate",
                    plugin.label()
                )));
            }
            if let Some((other, _)) = self.heads.get(t) {
                return Err(plugin.error(format!(
                    "head type `{t}` is registered twice: by {} at {} and by {} at {}",
                    other.label(),
                    other.info.path.display(),
                    plugin.label(),
                    plugin.info.path.display()
                )));
            }
        }
        for (t, f) in heads {
            self.heads.insert(t, (plugin.clone(), f));
        }
        self.plugins.push(plugin.clone());
        Ok(plugin)
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Whether a plugin of the set registered head type `type_name`.
    pub fn provides(&self, type_name: &str) -> bool {
        self.heads.contains_key(type_name)
    }

    /// What to record in a checkpoint.
    pub fn records(&self) -> Vec<PluginRecord> {
        self.plugins
            .iter()
            .map(|p| PluginRecord {
                path: p.info.path.clone(),
                file_name: p.info.file_name.clone(),
                name: p.info.name.clone(),
                version: p.info.version.clone(),
                sha256: p.info.sha256.clone(),
            })
            .collect()
    }

    /// `type = "..."` hints for an unknown head type: what is built in and what each plugin provides.
    pub fn known_types(&self) -> String {
        let mut s = format!("built-in head types: {}", crate::registry::head_types().join(", "));
        for p in &self.plugins {
            s.push_str(&format!("; {} provides: {}", p.label(), p.info.head_types.join(", ")));
        }
        s
    }
}

/// Checks, before a saved run loads them, that the plugins it was trained
/// with are where they were and unchanged. `state` names the checkpoint in errors.
pub fn verify_records(records: &[PluginRecord], state: &Path) -> Result<()> {
    for r in records {
        let trained = format!("{} {} (sha256 {})", r.name, r.version, r.sha256);
        if !r.path.is_file() {
            return Err(Error::Plugin {
                path: r.path.clone(),
                message: format!(
                    "the run in {} was trained with plugin {trained}, and the file is missing",
                    state.display()
                ),
            });
        }
        let sha256 = fsutil::sha256_file(&r.path)?;
        if sha256 != r.sha256 {
            return Err(Error::Plugin {
                path: r.path.clone(),
                message: format!(
                    "changed since training: the run in {} was trained with plugin {trained}, the file \
                     now has sha256 {sha256}; restore that build or retrain",
                    state.display()
                ),
            });
        }
    }
    Ok(())
}

/// Checks that the plugins loaded for a saved run are the ones it recorded.
pub fn verify_loaded(records: &[PluginRecord], set: &PluginSet, state: &Path) -> Result<()> {
    let loaded = set.records();
    for r in records {
        if !loaded.iter().any(|l| l.sha256 == r.sha256) {
            return Err(Error::Plugin {
                path: r.path.clone(),
                message: format!(
                    "the run in {} was trained with plugin {} {} (sha256 {}), which its config no longer loads",
                    state.display(),
                    r.name,
                    r.version,
                    r.sha256
                ),
            });
        }
    }
    Ok(())
}
