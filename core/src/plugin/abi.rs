//! The plugin ABI: the versioned declaration a plugin exports, the registrar
//! through which it names its head factories, and the foreign traits its
//! objects are seen through. Everything here crosses the library boundary;
//! [`ABI_VERSION`] changes whenever any of it does.

use std::any::Any;
use std::fmt;

use tch::{nn, Tensor};

use crate::head::{Labels, Prediction, Targets};
use crate::Error;

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
    pub(super) unsafe fn read(&self) -> Option<String> {
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
    /// [`crate::HeadConfig::name`].
    pub name: String,
    /// [`crate::HeadConfig::column`].
    pub column: String,
    /// [`crate::HeadConfig::loss_weight`].
    pub loss_weight: f64,
    /// [`crate::HeadConfig::stratify`].
    pub stratify: bool,
}

/// A head config made by a plugin, as the host sees it: [`crate::HeadConfig`] with
/// every call fallible and panic-free.
pub trait ForeignHeadConfig: Send + Sync {
    /// Name, column, loss weight, stratification.
    fn info(&self) -> Result<HeadInfo, PluginFailure>;
    /// [`crate::HeadConfig::fit`], with the state as JSON text.
    fn fit(&self, labels: &Labels) -> Result<String, PluginFailure>;
    /// [`crate::HeadConfig::build`], with the state as JSON text.
    fn build(&self, path: nn::Path, in_dim: i64, state: &str) -> Result<Box<dyn ForeignHead>, PluginFailure>;
}

/// A head made by a plugin, as the host sees it: [`crate::PropertyHead`] with every
/// call fallible and panic-free.
pub trait ForeignHead: Send {
    /// [`crate::PropertyHead::name`].
    fn name(&self) -> Result<String, PluginFailure>;
    /// [`crate::PropertyHead::forward`].
    ///
    /// # Shapes
    /// `[N, D]` -> `[N, K]`.
    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor, PluginFailure>;
    /// [`crate::PropertyHead::loss`].
    ///
    /// # Shapes
    /// `output`: `[M, K]`, `target`: `[M, ...]` -> scalar.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor, PluginFailure>;
    /// [`crate::PropertyHead::masked_loss`].
    ///
    /// # Shapes
    /// `output`: `[N, K]`, targets `[N, ...]`, mask `[N]` -> scalar.
    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Result<Tensor, PluginFailure>;
    /// [`crate::PropertyHead::encode`].
    fn encode(&self, labels: &Labels) -> Result<Targets, PluginFailure>;
    /// [`crate::PropertyHead::decode`].
    ///
    /// # Shapes
    /// `[N, K]` -> `N` predictions.
    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>, PluginFailure>;
    /// [`crate::PropertyHead::score`], with the [`crate::head::HeadScore`] as JSON text.
    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<String, PluginFailure>;
}
