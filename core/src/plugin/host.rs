//! The host side of plugin heads: reading a `[[heads]]` table whose `type`
//! is not built in ([`deserialize_heads`]), handing it to the plugin that
//! registered the type ([`PluginSet::head_config`]), and the adapters that
//! make the plugin's [`ForeignHeadConfig`] and [`ForeignHead`] a
//! [`HeadConfig`] and a [`PropertyHead`], every failure an [`Error::Plugin`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::value::{MapAccessDeserializer, StrDeserializer, StringDeserializer};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tch::{nn, Tensor};

use super::abi::{ForeignHead, ForeignHeadConfig, HeadInfo, PluginFailure};
use super::load::{LoadedPlugin, PluginSet};
use crate::extractor::taps::TapSelection;
use crate::head::{HeadConfig, HeadScore, HeadState, Labels, Prediction, PropertyHead, Targets};
use crate::{Error, Result};

/// Reads `[[heads]]`: a head whose `type` is built in through typetag (from
/// the TOML as it streams, so its errors keep their lines), any other as its
/// raw table. Such a head is only a placeholder: its `fit` and `build` fail
/// until [`PluginSet::head_config`] has made it from the table
/// ([`pending_table`]), as [`crate::config::LoadedConfig`] does once the
/// configuration's plugins are loaded.
pub fn deserialize_heads<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Box<dyn HeadConfig>>, D::Error> {
    struct Heads(Vec<String>);
    impl<'de> Visitor<'de> for Heads {
        type Value = Vec<Box<dyn HeadConfig>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of head tables")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
            let mut heads = Vec::new();
            while let Some(h) = seq.next_element_seed(HeadSeed { builtin: &self.0 })? {
                heads.push(h);
            }
            Ok(heads)
        }
    }
    d.deserialize_seq(Heads(crate::registry::head_types()))
}

/// One head table (see [`deserialize_heads`]).
struct HeadSeed<'a> {
    builtin: &'a [String],
}

impl<'de> DeserializeSeed<'de> for HeadSeed<'_> {
    type Value = Box<dyn HeadConfig>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadSeed<'_> {
    type Value = Box<dyn HeadConfig>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a head table with a `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let builtin = |t: &str| self.builtin.iter().any(|b| b == t);
        let mut table = toml::Table::new();
        while let Some(key) = map.next_key::<String>()? {
            if key != "type" {
                table.insert(key, map.next_value()?);
                continue;
            }
            let type_name: String = map.next_value()?;
            if !builtin(&type_name) {
                while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                    table.insert(k, v);
                }
                return Ok(Box::new(PendingHead::new(type_name, table)));
            }
            if table.is_empty() {
                // `type` came first: typetag reads the rest as it streams.
                let replay = Replay { tag: Some(type_name), key_given: false, map };
                return Box::<dyn HeadConfig>::deserialize(MapAccessDeserializer::new(replay));
            }
            table.insert(key, toml::Value::String(type_name));
            while let Some((k, v)) = map.next_entry::<String, toml::Value>()? {
                table.insert(k, v);
            }
            return toml::Value::Table(table)
                .try_into::<Box<dyn HeadConfig>>()
                .map_err(|e| A::Error::custom(e.message()));
        }
        Err(A::Error::missing_field("type"))
    }
}

/// A map that yields `type = <tag>` (already read) and then the rest of `map`.
struct Replay<A> {
    tag: Option<String>,
    key_given: bool,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, A::Error> {
        if self.tag.is_some() && !self.key_given {
            self.key_given = true;
            return seed.deserialize(StrDeserializer::<A::Error>::new("type")).map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, A::Error> {
        match self.tag.take() {
            Some(tag) => seed.deserialize(StringDeserializer::<A::Error>::new(tag)),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// A head table whose `type` is not built in, as read by [`deserialize_heads`].
/// Serialises as that table.
#[derive(Debug)]
struct PendingHead {
    type_name: &'static str,
    name: String,
    table: toml::Table,
}

impl PendingHead {
    fn new(type_name: String, table: toml::Table) -> Self {
        let name = table.get("name").and_then(toml::Value::as_str).unwrap_or_default().to_string();
        PendingHead { type_name: intern(&type_name), name, table }
    }

    fn unresolved(&self) -> Error {
        Error::Invalid(format!(
            "head `{}`: its type `{}` is not built in, and no plugin has made it (load the \
             configuration with LoadedConfig, which loads its plugins)",
            self.name, self.type_name
        ))
    }
}

impl Serialize for PendingHead {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.table.serialize(s)
    }
}

// Written out, as for `PluginHeadConfig`: the type name is only known at run time.
impl HeadConfig for PendingHead {
    fn typetag_name(&self) -> &'static str {
        self.type_name
    }

    fn typetag_deserialize(&self) {}

    fn name(&self) -> &str {
        &self.name
    }

    fn fit(&self, _: &Labels) -> Result<HeadState> {
        Err(self.unresolved())
    }

    fn build(&self, _: nn::Path, _: i64, _: &HeadState) -> Result<Box<dyn PropertyHead>> {
        Err(self.unresolved())
    }
}

/// The table of a head that [`deserialize_heads`] read raw (its `type` is not
/// built in), with its `type`; `None` for a built-in head.
pub fn pending_table(head: &dyn HeadConfig) -> Result<Option<toml::Table>> {
    if crate::registry::head_types().iter().any(|t| t == head.typetag_name()) {
        return Ok(None);
    }
    match toml::Value::try_from(head) {
        Ok(toml::Value::Table(t)) => Ok(Some(t)),
        Ok(v) => Err(Error::Invalid(format!("head `{}` is not a table: {v}", head.name()))),
        Err(e) => Err(Error::Invalid(format!("head `{}`: {e}", head.name()))),
    }
}

impl PluginSet {
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
// typetag's registry (it is resolved by `PluginSet::head_config`), and its
// name is only known at run time.
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

/// A plugin head on the host side: every call of the plugin's head goes
/// through its fallible [`ForeignHead`], and a failure (an error, or a panic
/// the plugin caught) becomes an [`Error::Plugin`] naming the library file,
/// the plugin, the head and the call.
struct PluginHead {
    // Field order: the plugin's object is dropped before the plugin.
    inner: Box<dyn ForeignHead>,
    plugin: Arc<LoadedPlugin>,
    name: String,
}

impl PluginHead {
    /// The value, or the plugin's failure in `what` as an error of the host.
    fn check<T>(&self, what: &str, r: std::result::Result<T, PluginFailure>) -> Result<T> {
        r.map_err(|f| self.plugin.failure(&format!("head `{}` {what}", self.name), f))
    }
}

impl PropertyHead for PluginHead {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.check("forward", self.inner.forward(features, train))
    }

    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        self.check("loss", self.inner.loss(output, target))
    }

    fn masked_loss(&self, output: &Tensor, targets: &Targets) -> Result<Tensor> {
        self.check("masked_loss", self.inner.masked_loss(output, targets))
    }

    fn encode(&self, labels: &Labels) -> Result<Targets> {
        self.check("encode", self.inner.encode(labels))
    }

    fn decode(&self, output: &Tensor) -> Result<Vec<Prediction>> {
        self.check("decode", self.inner.decode(output))
    }

    fn score(&self, predictions: &[Prediction], labels: &Labels) -> Result<HeadScore> {
        let json = self.check("score", self.inner.score(predictions, labels))?;
        serde_json::from_str(&json).map_err(|e| self.plugin.error(format!("score returned bad JSON: {e}")))
    }
}
