//! # furcate-plugin
//!
//! What a furcate head plugin depends on. A plugin is a `cdylib` that
//! implements furcate-core's [`HeadConfig`] and [`PropertyHead`] for a new head,
//! exactly as a built-in head does, registers it by its `type` name and
//! exports its declaration:
//!
//! ```text
//! use furcate_plugin::prelude::*;
//!
//! fn register(r: &mut dyn Registrar) {
//!     r.head::<FocalConfig>("focal");
//! }
//! furcate_plugin::export_plugin!(register);
//! ```
//!
//! [`export_plugin!`] writes the versioned [`PluginDeclaration`] that furcate
//! checks before it calls anything of the plugin. The adapters here run inside
//! the plugin: they catch every panic of the plugin's code where it happens and
//! hand it to furcate as a [`PluginFailure`], so no panic unwinds across the
//! library boundary. See `docs/src/plugins.md`.
#![deny(missing_docs)]

use std::panic::AssertUnwindSafe;

use furcate_core::head::{HeadConfig, HeadState, Labels, Prediction, PropertyHead, Targets};
use serde::de::DeserializeOwned;
use tch::{nn, Tensor};

pub use furcate_core;
pub use furcate_core::plugin::{
    FfiStr, ForeignHead, ForeignHeadConfig, HeadFactory, HeadInfo, PluginDeclaration, PluginFailure,
    RegisterFn, Registrar, ABI_VERSION,
};
pub use serde;
pub use serde_json;
pub use tch;
pub use typetag;

/// What a head plugin usually needs, in one `use`.
pub mod prelude {
    pub use super::RegisterHead;
    pub use furcate_core::head::{
        encode_cells, HeadConfig, HeadScore, HeadState, Labels, Prediction, PropertyHead, Targets,
    };
    pub use furcate_core::plugin::Registrar;
    pub use furcate_core::{Error, Result};
    pub use serde::{Deserialize, Serialize};
    pub use tch::{nn, nn::Module, Kind, Tensor};
    pub use typetag;
}

/// Exports the plugin's declaration; `$register` is a
/// `fn(&mut dyn Registrar)` that registers the plugin's heads. The plugin's
/// name and version are its package's.
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        /// The declaration furcate reads and checks first.
        #[unsafe(no_mangle)]
        pub static FURCATE_PLUGIN_DECLARATION: $crate::PluginDeclaration =
            $crate::PluginDeclaration::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), {
                fn __furcate_plugin_register(
                    registrar: &mut dyn $crate::Registrar,
                ) -> ::core::result::Result<(), $crate::PluginFailure> {
                    $crate::guard(|| {
                        $register(registrar);
                        Ok(())
                    })
                }
                __furcate_plugin_register
            });
    };
}

/// Runs plugin code `f`, turning a panic into a [`PluginFailure`].
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginFailure>) -> Result<T, PluginFailure> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(PluginFailure::from_panic(p)))
}

/// Registers head configs by type.
pub trait RegisterHead {
    /// Heads declared with `type = "<type_name>"` are read as `T` from their
    /// TOML table (without `type`).
    fn head<T: HeadConfig + DeserializeOwned + 'static>(&mut self, type_name: &str);
}

impl<R: Registrar + ?Sized> RegisterHead for R {
    fn head<T: HeadConfig + DeserializeOwned + 'static>(&mut self, type_name: &str) {
        self.register_head(type_name, head_factory::<T>);
    }
}

/// The [`HeadFactory`] of head config `T`: reads `T` from the table's TOML text.
pub fn head_factory<T: HeadConfig + DeserializeOwned + 'static>(
    table: &str,
) -> Result<Box<dyn ForeignHeadConfig>, PluginFailure> {
    guard(|| {
        let fail = |message: String| PluginFailure { message, ..PluginFailure::default() };
        let table: toml::Table = table.parse().map_err(|e: toml::de::Error| fail(e.message().to_string()))?;
        let config: T = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| fail(e.message().to_string()))?;
        Ok(Box::new(ConfigAdapter(config)) as Box<dyn ForeignHeadConfig>)
    })
}

struct ConfigAdapter<T>(T);

impl<T: HeadConfig> ForeignHeadConfig for ConfigAdapter<T> {
    fn info(&self) -> Result<HeadInfo, PluginFailure> {
        guard(|| {
            Ok(HeadInfo {
                name: self.0.name().to_string(),
                column: self.0.column().to_string(),
                loss_weight: self.0.loss_weight(),
                stratify: self.0.stratify(),
            })
        })
    }

    fn fit(&self, labels: &Labels) -> Result<String, PluginFailure> {
        guard(|| Ok(self.0.fit(labels)?.to_string()))
    }

    fn build(&self, path: nn::Path, in_dim: i64, state: &str) -> Result<Box<dyn ForeignHead>, PluginFailure> {
        guard(|| {
            let state: HeadState = serde_json::from_str(state).map_err(|e| PluginFailure {
                message: format!("bad state: {e}"),
                ..PluginFailure::default()
            })?;
            Ok(Box::new(HeadAdapter(self.0.build(path, in_dim, &state)?)) as Box<dyn ForeignHead>)
        })
    }
}

struct HeadAdapter(Box<dyn PropertyHead>);

impl ForeignHead for HeadAdapter {
    fn name(&self) -> Result<String, PluginFailure> {
        guard(|| Ok(self.0.name().to_string()))
    }

    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor, PluginFailure> {
        guard(|| Ok(self.0.forward(features, train)?))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor, PluginFailure> {
        guard(|| Ok(self.0.loss(output, target)?))
    }

    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Result<Tensor, PluginFailure> {
        guard(|| Ok(self.0.masked_loss(output, targets)?))
    }

    fn encode(&self, labels: &Labels) -> Result<Targets, PluginFailure> {
        guard(|| Ok(self.0.encode(labels)?))
    }

    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>, PluginFailure> {
        guard(|| Ok(self.0.decode(output)?))
    }

    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<String, PluginFailure> {
        guard(|| {
            let score = self.0.score(predictions, labels)?;
            serde_json::to_string(&score)
                .map_err(|e| PluginFailure { message: e.to_string(), ..PluginFailure::default() })
        })
    }
}
