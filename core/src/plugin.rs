//! Head plugins: property heads loaded at run time from dynamic libraries
//! that the run's TOML names.
//!
//! ```toml
//! plugins = ["plugins/libfurcate_plugin_example.so"]   # relative to the config file
//!
//! [[heads]]
//! type = "focal"          # registered by the plugin
//! name = "morphology"
//! ```
//!
//! typetag's registry does not cross a library boundary, so plugin heads go
//! through a host-owned registry keyed by the same `type` string: a head whose
//! `type` is built in is read by typetag as usual; any other is handed, as its
//! own TOML table, to the plugin that registered that name.
//!
//! # The boundary
//!
//! A plugin exports one static [`PluginDeclaration`] under
//! [`DECLARATION_SYMBOL`] (the `furcate-plugin` crate's `export_plugin!`
//! writes it). Its leading fields (magic, ABI version, furcate-core, rustc,
//! tch and libtorch versions) keep their layout in every ABI version, so the
//! host reads and checks them before anything else of the plugin is touched or
//! called. Only after every version matches does the host call its register
//! function, through which the plugin names its head factories
//! ([`Registrar`]).
//!
//! Everything that crosses afterwards is made of std types, furcate-core's own
//! plain types and tch tensors; head states and scores cross as JSON text and
//! head tables as TOML text, so that no third-party type layout (serde_json,
//! toml) has to agree. Every method of [`ForeignHeadConfig`] and
//! [`ForeignHead`] returns a `Result`: the plugin side catches panics where
//! they happen (a panic must be caught by the std that raised it; unwinding
//! into the host would abort) and hands back a [`PluginFailure`], which the
//! host turns into [`Error::Plugin`] naming the plugin. Where the host trait
//! has no error channel ([`PropertyHead::forward`], `loss`, `decode`), the host
//! raises its own panic with that message, as a built-in head's tch call would.
//!
//! Host and plugin must use the same global allocator (neither sets a
//! `#[global_allocator]`), since boxes and strings made on one side are freed on
//! the other. A loaded library is never unloaded: the objects it made hold an
//! `Arc` of it, and even after they are gone it stays mapped until the process
//! exits, because unloading a Rust library that left thread-locals or threads
//! behind is unsound.

use crate::extractor::taps::TapSelection;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tch::{nn, Tensor};

use crate::head::{HeadConfig, HeadScore, HeadState, Labels, Prediction, PropertyHead, Targets};
use crate::{fsutil, Error, Result};

/// Version of the plugin ABI (the declaration, the registrar and the foreign
/// traits). Bumped whenever any of them changes.
pub const ABI_VERSION: u32 = 1;

/// The first bytes of every declaration.
pub const MAGIC: [u8; 16] = *b"furcate-plugin\0\0";

/// Name of the exported static holding the [`PluginDeclaration`].
pub const DECLARATION_SYMBOL: &str = "FURCATE_PLUGIN_DECLARATION";

/// The rustc that built this furcate-core (`rustc --version`).
pub const RUSTC_VERSION: &str = env!("FURCATE_RUSTC_VERSION");

/// The tch version furcate-core is built with (kept equal to `Cargo.lock` by a test).
pub const TCH_VERSION: &str = "0.24.0";

/// The libtorch version furcate-core was built against.
pub const LIBTORCH_VERSION: &str = env!("FURCATE_LIBTORCH_BUILD_VERSION");

/// Longest string the host reads out of a declaration.
const MAX_DECLARED_LEN: usize = 4096;

/// A `&'static str` as pointer and length, with a fixed layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FfiStr {
    ptr: *const u8,
    len: usize,
}

impl FfiStr {
    /// Points at `s`.
    pub const fn new(s: &'static str) -> Self {
        FfiStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// The text, or `None` when the pointer is null or the length implausible.
    ///
    /// # Safety
    /// `self` must come from a declaration whose layout has been checked.
    unsafe fn read(&self) -> Option<String> {
        if self.ptr.is_null() || self.len > MAX_DECLARED_LEN {
            return None;
        }
        // SAFETY: the caller vouches for the declaration; the length is bounded.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl fmt::Debug for FfiStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FfiStr")
    }
}

/// The function through which a plugin registers what it provides; it
/// catches its own panics.
pub type RegisterFn = fn(&mut dyn Registrar) -> Result<(), PluginFailure>;

/// Makes a plugin head's config from its TOML table (as TOML text, without
/// `type`); catches its own panics.
pub type HeadFactory = fn(&str) -> Result<Box<dyn ForeignHeadConfig>, PluginFailure>;

/// What a plugin exports under [`DECLARATION_SYMBOL`].
///
/// The fields up to `libtorch_version` keep this layout in every ABI version;
/// the rest is read only when `abi_version` is [`ABI_VERSION`].
#[repr(C)]
#[derive(Debug)]
pub struct PluginDeclaration {
    /// Always [`MAGIC`].
    pub magic: [u8; 16],
    /// The plugin ABI version the plugin was built for.
    pub abi_version: u32,
    /// The furcate-core version it was built against.
    pub core_version: FfiStr,
    /// The rustc that built it.
    pub rustc_version: FfiStr,
    /// The tch version it was built with.
    pub tch_version: FfiStr,
    /// The libtorch version it was built against.
    pub libtorch_version: FfiStr,
    /// Whether it was built with `panic = "unwind"` (needed to catch its panics).
    pub panic_unwind: bool,
    /// The plugin's name.
    pub name: FfiStr,
    /// The plugin's version.
    pub version: FfiStr,
    /// Registers the plugin's heads.
    pub register: RegisterFn,
}

// SAFETY: a declaration only points at immutable `'static` data and code.
unsafe impl Sync for PluginDeclaration {}

impl PluginDeclaration {
    /// The declaration of a plugin `name` `version` built against this
    /// furcate-core, registering through `register`.
    pub const fn new(name: &'static str, version: &'static str, register: RegisterFn) -> Self {
        PluginDeclaration {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            core_version: FfiStr::new(crate::VERSION),
            rustc_version: FfiStr::new(RUSTC_VERSION),
            tch_version: FfiStr::new(TCH_VERSION),
            libtorch_version: FfiStr::new(LIBTORCH_VERSION),
            panic_unwind: cfg!(panic = "unwind"),
            name: FfiStr::new(name),
            version: FfiStr::new(version),
            register,
        }
    }
}

/// Where a plugin registers its head factories (implemented by the host).
pub trait Registrar {
    /// Registers `factory` for heads declared with `type = "<type_name>"`.
    fn register_head(&mut self, type_name: &str, factory: HeadFactory);
}

/// An error or panic inside plugin code, as it crosses the boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginFailure {
    /// What went wrong.
    pub message: String,
    /// The sample whose label was unusable, for [`Error::Label`].
    pub label: Option<usize>,
    /// Whether plugin code panicked.
    pub panicked: bool,
}

impl PluginFailure {
    /// A failure from a panic payload.
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        PluginFailure { message, label: None, panicked: true }
    }
}

impl From<Error> for PluginFailure {
    fn from(e: Error) -> Self {
        match e {
            Error::Label { index, message } => PluginFailure { message, label: Some(index), panicked: false },
            e => PluginFailure { message: e.to_string(), label: None, panicked: false },
        }
    }
}

/// Name, column and weights of a plugin head's config, read once.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadInfo {
    /// [`HeadConfig::name`].
    pub name: String,
    /// [`HeadConfig::column`].
    pub column: String,
    /// [`HeadConfig::loss_weight`].
    pub loss_weight: f64,
    /// [`HeadConfig::stratify`].
    pub stratify: bool,
}

/// A head config made by a plugin, as the host sees it: [`HeadConfig`] with
/// every call fallible and panic-free.
pub trait ForeignHeadConfig: Send + Sync {
    /// Name, column, loss weight, stratification.
    fn info(&self) -> Result<HeadInfo, PluginFailure>;
    /// [`HeadConfig::fit`], with the state as JSON text.
    fn fit(&self, labels: &Labels) -> Result<String, PluginFailure>;
    /// [`HeadConfig::build`], with the state as JSON text.
    fn build(&self, path: nn::Path, in_dim: i64, state: &str) -> Result<Box<dyn ForeignHead>, PluginFailure>;
}

/// A head made by a plugin, as the host sees it: [`PropertyHead`] with every
/// call fallible and panic-free.
pub trait ForeignHead: Send {
    /// [`PropertyHead::name`].
    fn name(&self) -> Result<String, PluginFailure>;
    /// [`PropertyHead::forward`].
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, K]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor, PluginFailure>;
    /// [`PropertyHead::loss`].
    ///
    /// # Shapes
    /// `output`: `[M, K]`, `target`: `[M, ...]` -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor, PluginFailure>;
    /// [`PropertyHead::masked_loss`].
    ///
    /// # Shapes
    /// `output`: `[N, K]`, targets `[N, ...]`, mask `[N]` -> scalar.
    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Result<Tensor, PluginFailure>;
    /// [`PropertyHead::encode`].
    fn encode(&self, labels: &Labels) -> Result<Targets, PluginFailure>;
    /// [`PropertyHead::decode`].
    ///
    /// # Shapes
    /// `[N, K]` -> `N` predictions.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>, PluginFailure>;
    /// [`PropertyHead::score`], with the [`HeadScore`] as JSON text.
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<String, PluginFailure>;
}

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
    fn label(&self) -> String {
        format!("{} ({} {})", self.info.file_name, self.info.name, self.info.version)
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Error::Plugin { path: self.info.path.clone(), message: message.into() }
    }

    /// The [`Error`] for a failure of this plugin's code during `what`.
    fn failure(&self, what: &str, f: PluginFailure) -> Error {
        match f {
            PluginFailure { label: Some(index), panicked: false, message } => Error::Label { index, message },
            PluginFailure { panicked: true, message, .. } => self.error(format!(
                "plugin {} {} panicked in {what}: {message}",
                self.info.name, self.info.version
            )),
            PluginFailure { message, .. } => self.error(format!("{what}: {message}")),
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
    heads: BTreeMap<String, (Arc<LoadedPlugin>, HeadFactory)>,
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

    /// The config of a plugin head of type `type_name` from its TOML `table`.
    pub fn head_config(&self, type_name: &str, table: toml::Table) -> Result<Box<dyn HeadConfig>> {
        let (plugin, factory) = self.heads.get(type_name).ok_or_else(|| {
            Error::Invalid(format!("unknown head type `{type_name}`; {}", self.known_types()))
        })?;
        let mut table = table;
        table.remove("type");
        // `taps` is the host's key (which features the head reads), never the plugin's.
        let mut own = table.clone();
        let taps = own
            .remove("taps")
            .map(|v| {
                v.try_into::<TapSelection>()
                    .map_err(|e| Error::Invalid(format!("the `{type_name}` head table: taps: {e}")))
            })
            .transpose()?;
        let text = toml::to_string(&own).map_err(|e| Error::Invalid(e.to_string()))?;
        let what = format!("the `{type_name}` head table");
        let inner = factory(&text).map_err(|f| plugin.failure(&what, f))?;
        let info = inner.info().map_err(|f| plugin.failure(&what, f))?;
        Ok(Box::new(PluginHeadConfig {
            inner,
            plugin: plugin.clone(),
            type_name: intern(type_name),
            table,
            info,
            taps,
        }))
    }
}

/// A `'static` copy of `s`, made once per distinct string (typetag wants
/// `&'static str` type names).
fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(s) {
        return n;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// A plugin head's config on the host side. Serialises as its original table,
/// so the resolved config of a run reads back the same.
struct PluginHeadConfig {
    // Field order: the plugin's object is dropped before the plugin.
    inner: Box<dyn ForeignHeadConfig>,
    plugin: Arc<LoadedPlugin>,
    type_name: &'static str,
    table: toml::Table,
    taps: Option<TapSelection>,
    info: HeadInfo,
}

impl fmt::Debug for PluginHeadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHeadConfig")
            .field("type", &self.type_name)
            .field("plugin", &self.plugin.info.path)
            .field("table", &self.table)
            .finish()
    }
}

impl Serialize for PluginHeadConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.table.serialize(s)
    }
}

// Written out rather than with `#[typetag::serde]`: a plugin type is not in
// typetag's registry (it is read through `deserialize_heads`), and its name is
// only known at run time.
impl HeadConfig for PluginHeadConfig {
    fn typetag_name(&self) -> &'static str {
        self.type_name
    }

    fn typetag_deserialize(&self) {}

    fn name(&self) -> &str {
        &self.info.name
    }

    fn column(&self) -> &str {
        &self.info.column
    }

    fn loss_weight(&self) -> f64 {
        self.info.loss_weight
    }

    fn taps(&self) -> Option<&TapSelection> {
        self.taps.as_ref()
    }

    fn stratify(&self) -> bool {
        self.info.stratify
    }

    fn fit(&self, labels: &Labels) -> Result<HeadState> {
        let json = self.inner.fit(labels).map_err(|f| self.plugin.failure("fit", f))?;
        serde_json::from_str(&json)
            .map_err(|e| self.plugin.error(format!("fit returned a state that is not JSON: {e}")))
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &HeadState) -> Result<Box<dyn PropertyHead>> {
        let inner = self
            .inner
            .build(path, in_dim, &state.to_string())
            .map_err(|f| self.plugin.failure("build", f))?;
        let name = inner.name().map_err(|f| self.plugin.failure("name", f))?;
        Ok(Box::new(PluginHead { inner, plugin: self.plugin.clone(), name }))
    }
}

/// A plugin head on the host side.
struct PluginHead {
    // Field order: the plugin's object is dropped before the plugin.
    inner: Box<dyn ForeignHead>,
    plugin: Arc<LoadedPlugin>,
    name: String,
}

impl PluginHead {
    /// The value, or a host-side panic with the plugin's failure, for the
    /// methods of [`PropertyHead`] without an error channel.
    fn expect<T>(&self, what: &str, r: Result<T, PluginFailure>) -> T {
        match r {
            Ok(v) => v,
            Err(f) => panic!("{}", self.plugin.failure(&format!("head `{}` {what}", self.name), f)),
        }
    }
}

impl PropertyHead for PluginHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, features: &Tensor, train: bool) -> Tensor {
        self.expect("forward", self.inner.forward(features, train))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> Tensor {
        self.expect("loss", self.inner.loss(output, target))
    }

    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Tensor {
        self.expect("masked_loss", self.inner.masked_loss(output, targets))
    }

    fn encode(&self, labels: &Labels) -> Result<Targets> {
        self.inner.encode(labels).map_err(|f| self.plugin.failure("encode", f))
    }

    fn decode(&self, output: &Tensor) -> Vec<Prediction> {
        self.expect("decode", self.inner.decode(output))
    }

    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        let json = self.inner.score(predictions, labels).map_err(|f| self.plugin.failure("score", f))?;
        serde_json::from_str(&json).map_err(|e| self.plugin.error(format!("score returned bad JSON: {e}")))
    }
}

/// The plugins a configuration names, loaded, and which of its heads they make.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The loaded plugins.
    pub set: PluginSet,
    /// Per `[[heads]]` entry: its type when a plugin provides it.
    pub kinds: Vec<Option<String>>,
    /// Head types neither built in nor provided by a plugin.
    pub unknown: Vec<String>,
}

/// Reads `plugins` and the head types of config `text` (at `path`), loads the
/// plugins and sorts the heads. Text that does not parse is left to the real
/// parse, which reports it with its line.
pub(crate) fn prepare(text: &str, path: &Path) -> Result<Prepared> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(Prepared::default());
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut set = PluginSet::default();
    for entry in doc.get("plugins").and_then(toml::Value::as_array).into_iter().flatten() {
        let Some(file) = entry.as_str() else { continue };
        let p = dir.join(file);
        set.add(&p).map_err(|e| match e {
            Error::Plugin { path: plugin, message } => {
                let line = crate::config::line_of(text, &format!("\"{file}\""), 0)
                    .map(|l| format!(" (listed in {} line {l})", path.display()))
                    .unwrap_or_default();
                Error::Plugin { path: plugin, message: format!("{message}{line}") }
            }
            e => e,
        })?;
    }
    let builtin = crate::registry::head_types();
    let mut kinds = Vec::new();
    let mut unknown = Vec::new();
    for head in doc.get("heads").and_then(toml::Value::as_array).into_iter().flatten() {
        let t = head.get("type").and_then(toml::Value::as_str).unwrap_or_default();
        if set.provides(t) {
            kinds.push(Some(t.to_string()));
        } else {
            if !builtin.iter().any(|b| b == t) {
                unknown.push(t.to_string());
            }
            kinds.push(None);
        }
    }
    Ok(Prepared { set, kinds, unknown })
}

thread_local! {
    static CONTEXT: RefCell<Option<(PluginSet, Vec<Option<String>>)>> = const { RefCell::new(None) };
}

/// Runs `f` (a parse of a config) with `prepared`'s plugins in reach of
/// [`deserialize_heads`].
pub(crate) fn with_plugins<T>(prepared: &Prepared, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CONTEXT.with(|c| c.borrow_mut().take());
        }
    }
    CONTEXT.with(|c| *c.borrow_mut() = Some((prepared.set.clone(), prepared.kinds.clone())));
    let _reset = Reset;
    f()
}

/// Deserialises `heads`: built-in types through typetag, the types the
/// configuration's plugins provide through their factories.
pub fn deserialize_heads<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Box<dyn HeadConfig>>, D::Error> {
    struct Heads;
    impl<'de> Visitor<'de> for Heads {
        type Value = Vec<Box<dyn HeadConfig>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of head tables")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
            let context = CONTEXT.with(|c| c.borrow().clone());
            let mut heads = Vec::new();
            loop {
                let kind = context.as_ref().and_then(|(_, kinds)| kinds.get(heads.len()).cloned().flatten());
                let head = match (kind, &context) {
                    (Some(type_name), Some((set, _))) => {
                        seq.next_element_seed(PluginHeadSeed { set, type_name })?
                    }
                    _ => seq.next_element::<Box<dyn HeadConfig>>()?,
                };
                match head {
                    Some(h) => heads.push(h),
                    None => return Ok(heads),
                }
            }
        }
    }
    d.deserialize_seq(Heads)
}

struct PluginHeadSeed<'a> {
    set: &'a PluginSet,
    type_name: String,
}

impl<'de> DeserializeSeed<'de> for PluginHeadSeed<'_> {
    type Value = Box<dyn HeadConfig>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        let table = toml::Table::deserialize(d)?;
        self.set.head_config(&self.type_name, table).map_err(D::Error::custom)
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
