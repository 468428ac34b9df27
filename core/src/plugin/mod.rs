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
//! `type` is built in is read by typetag as usual; any other is read as its
//! raw TOML table ([`deserialize_heads`]) and, once the configuration is
//! parsed and its plugins loaded, handed to the plugin that registered that
//! name ([`PluginSet::head_config`]).
//!
//! The module is split by concern: [`abi`] (the declaration, the registrar and
//! the foreign traits: what crosses the boundary), [`load`] (opening and
//! checking libraries, the set of loaded plugins) and [`host`] (the adapters
//! that make a plugin's objects a [`crate::HeadConfig`] and a
//! [`crate::PropertyHead`]).
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
//! host turns into [`crate::Error::Plugin`] naming the library file, the plugin
//! and the head. Every method of [`crate::PropertyHead`] returns a `Result`
//! too, so a failing plugin head ends the command with that error, never
//! with a panic or an abort.
//!
//! Host and plugin must use the same global allocator (neither sets a
//! `#[global_allocator]`), since boxes and strings made on one side are freed on
//! the other. A loaded library is never unloaded: the objects it made hold an
//! `Arc` of it, and even after they are gone it stays mapped until the process
//! exits, because unloading a Rust library that left thread-locals or threads
//! behind is unsound.

pub mod abi;
pub mod host;
pub mod load;

pub use abi::{
    FfiStr, ForeignHead, ForeignHeadConfig, HeadFactory, HeadInfo, PluginDeclaration, PluginFailure,
    RegisterFn, Registrar, ABI_VERSION, DECLARATION_SYMBOL, LIBTORCH_VERSION, MAGIC, RUSTC_VERSION,
    TCH_VERSION,
};
pub use host::deserialize_heads;
pub use load::{inspect, verify_loaded, verify_records, LoadedPlugin, PluginInfo, PluginRecord, PluginSet};
