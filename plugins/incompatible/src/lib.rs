//! A furcate plugin declaring an ABI and a furcate-core version that no
//! furcate has, for the tests: furcate must refuse it before calling anything
//! of it (its register function aborts the process if called).
#![deny(missing_docs)]

use furcate_plugin::{FfiStr, PluginDeclaration, PluginFailure, Registrar, ABI_VERSION};

fn register(_: &mut dyn Registrar) -> Result<(), PluginFailure> {
    std::process::abort()
}

/// A declaration from a future, incompatible furcate.
#[unsafe(no_mangle)]
pub static FURCATE_PLUGIN_DECLARATION: PluginDeclaration = PluginDeclaration {
    abi_version: ABI_VERSION + 1000,
    core_version: FfiStr::new("0.0.0-incompatible"),
    ..PluginDeclaration::new("furcate-plugin-incompatible", "0.1.0", register)
};
