//! The run configuration: one TOML file that names the data, the extractor,
//! the optional shared trunk, the heads and the training settings.
//!
//! ```toml
//! [data]
//! manifest = "data/synthetic/manifest.csv"
//!
//! [extractor]
//! type = "efficientnet_lite0"
//! weights = "cache:efficientnet_lite0.safetensors"
//! size = 128
//!
//! [trunk]          # optional: the thesis's shared fc_layer
//! hidden = [100]
//!
//! [[heads]]
//! type = "classification"
//! name = "morphology"
//!
//! [training]
//! epochs = 1024
//! test_fraction = 0.1
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::extractor::taps::TapSelection;
use crate::extractor::{BuildContext, ExtractorConfig};
use crate::head::HeadConfig;
use crate::model::TrunkConfig;
use crate::plugin::{self, PluginSet};
use crate::{Error, Result};

pub use crate::data::config::{DataConfig, Fit};
pub use crate::train::config::{
    LossWeighting, OptimizerKind, SemiSupervised, TrainingConfig, WeightDecay, DEFAULT_VALIDATION_FRACTION,
    MIN_ROWS_FOR_VALIDATION, MIN_VALIDATION_ROWS,
};

/// A whole run configuration.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Head plugin libraries (relative to the config file) whose head types
    /// `[[heads]]` may use; see [`crate::plugin`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PathBuf>,
    /// Where the labelled images are (`furcate extract --images` needs none).
    #[serde(default)]
    pub data: DataConfig,
    /// The frozen feature extractor.
    pub extractor: Box<dyn ExtractorConfig>,
    /// The optional shared layers between extractor and heads; none makes the
    /// heads fully independent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<TrunkConfig>,
    /// One head per property (`furcate extract` needs none).
    #[serde(default, deserialize_with = "crate::plugin::deserialize_heads")]
    pub heads: Vec<Box<dyn HeadConfig>>,
    /// Optimiser, epochs, split.
    #[serde(default)]
    pub training: TrainingConfig,
    /// CPU threads (`[runtime] threads`).
    #[serde(default, skip_serializing_if = "crate::runtime::RuntimeConfig::is_default")]
    pub runtime: crate::runtime::RuntimeConfig,
    /// Pairs of a value head and a binned-class head whose agreement the
    /// evaluation reports; empty: every value head is paired with every class
    /// head whose class names are all numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consistency: Vec<ConsistencyPair>,
}

impl RunConfig {
    /// Why `training.standardise_features` cannot be on here, when it is on
    /// with `extractor.trainable_stages > 0`: standardising the boundary
    /// activations would feed the pretrained stages inputs they were never
    /// trained on. The one rule behind the config check (which adds the line)
    /// and the model build.
    pub fn standardise_conflict(&self) -> Option<String> {
        let stages = self.extractor.trainable_stages();
        (self.training.standardise() && stages > 0).then(|| {
            format!(
                "training.standardise_features cannot be used with extractor.trainable_stages = {stages}: \
                 it would rescale the activations the pretrained stages take; turn one of them off"
            )
        })
    }
}

/// `[[consistency]]`: a head predicting a value and a head predicting its bin.
///
/// The evaluation rounds each predicted value to the nearest class centre and
/// reports how often that agrees with the class head's prediction, and how
/// often it is the true class.
///
/// ```toml
/// [[consistency]]
/// value = "volume_fraction"
/// class = "volume_fraction_class"
/// # centres = { low = 0.1, high = 0.4 }   # default: the class names read as numbers
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyPair {
    /// The head whose predictions are values (regression, gaussian, ...).
    pub value: String,
    /// The head whose predictions are classes (the bins of that value).
    pub class: String,
    /// Each class's centre; absent: every class name must be a number, which is its centre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centres: Option<std::collections::BTreeMap<String, f64>>,
}

/// A parsed configuration with the file it came from.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: RunConfig,
    /// The file it was read from (or a description for in-memory text).
    pub path: PathBuf,
    /// Its text, for error lines.
    pub text: String,
    /// The plugins it names, loaded (they stay loaded while any head they made lives).
    pub plugins: PluginSet,
}

impl LoadedConfig {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_str(&text, path)
    }

    /// Parses and checks configuration text; `path` names it in errors and
    /// anchors its relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Self> {
        let loaded = Self::parse(text, path)?;
        loaded.check()?;
        Ok(loaded)
    }

    /// Reads a configuration for feature extraction only (`furcate
    /// extract`): `[[heads]]` may be left out, and so may `[data]` when
    /// `with_data` is false (the images are given otherwise).
    pub fn for_extraction(path: &Path, with_data: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let loaded = Self::parse(&text, path)?;
        combine(&loaded.path, loaded.problems_with(false, with_data))?;
        Ok(loaded)
    }

    /// Parses configuration text without checking it: the TOML (a head
    /// whose `type` is not built in is read as its raw table), then the
    /// plugins it names are loaded and make those heads.
    fn parse(text: &str, path: &Path) -> Result<Self> {
        let config: RunConfig = toml::from_str(text).map_err(|e| Error::config(path, toml_message(&e)))?;
        let mut loaded = LoadedConfig {
            config,
            path: path.to_path_buf(),
            text: text.to_string(),
            plugins: PluginSet::default(),
        };
        loaded.load_plugins()?;
        loaded.resolve_plugin_heads()?;
        Ok(loaded)
    }

    /// Loads the plugins the configuration names (relative to its folder); an
    /// error names the line that lists the failing one.
    fn load_plugins(&mut self) -> Result<()> {
        let dir = self.dir();
        for file in &self.config.plugins {
            self.plugins.add(&dir.join(file)).map_err(|e| match e {
                Error::Plugin { path: plugin, message } => {
                    let line = line_of(&self.text, &format!("\"{}\"", file.display()), 0)
                        .map(|l| format!(" (listed in {} line {l})", self.path.display()))
                        .unwrap_or_default();
                    Error::Plugin { path: plugin, message: format!("{message}{line}") }
                }
                e => e,
            })?;
        }
        Ok(())
    }

    /// Has the loaded plugins make the heads whose `type` is not built in
    /// (read as raw tables by [`plugin::deserialize_heads`]). An error names
    /// the head's line, or its `type`'s when no plugin provides the type.
    fn resolve_plugin_heads(&mut self) -> Result<()> {
        let lines = head_lines(&self.text);
        for i in 0..self.config.heads.len() {
            let Some(table) = plugin::host::pending_table(self.config.heads[i].as_ref())? else { continue };
            let type_name = self.config.heads[i].typetag_name();
            let (table_line, type_line) = lines.get(i).copied().unwrap_or_default();
            let at = |line: Option<usize>, message: String| match line {
                Some(l) => Error::config(&self.path, format!("line {l}: {message}")),
                None => Error::config(&self.path, message),
            };
            if !self.plugins.provides(type_name) {
                let message = format!("unknown head type `{type_name}`; {}", self.plugins.known_types());
                return Err(at(type_line.or(table_line), message));
            }
            let head =
                self.plugins.head_config(type_name, table).map_err(|e| at(table_line, e.to_string()))?;
            self.config.heads[i] = head;
        }
        Ok(())
    }

    /// The folder relative paths are taken from.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// A build context for the extractor.
    pub fn build_context(&self) -> BuildContext {
        BuildContext::new(self.dir())
    }

    /// The configuration as TOML (resolved: every default spelled out).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(&self.config).map_err(|e| Error::config(&self.path, e.to_string()))
    }

    /// An error about the config, pointing at the first line containing `needle` when there is one.
    pub fn error_at(&self, needle: &str, message: impl std::fmt::Display) -> Error {
        self.error_at_nth(needle, 0, message)
    }

    /// Like [`LoadedConfig::error_at`], pointing at the `nth` (0-based) line containing `needle`.
    pub fn error_at_nth(&self, needle: &str, nth: usize, message: impl std::fmt::Display) -> Error {
        match line_of(&self.text, needle, nth) {
            Some(line) => Error::config(&self.path, format!("line {line}: {message}")),
            None => Error::config(&self.path, message.to_string()),
        }
    }

    /// An error pointing at the `nth` (0-based) line that sets `key` (a line
    /// starting with `key =`).
    pub fn error_at_key(&self, key: &str, nth: usize, message: impl std::fmt::Display) -> Error {
        let line = self
            .text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim_start();
                l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .nth(nth)
            .map(|(i, _)| i + 1);
        match line {
            Some(line) => Error::config(&self.path, format!("line {line}: {message}")),
            None => Error::config(&self.path, message.to_string()),
        }
    }

    /// The rule on `training.folds` that needs the data: at most one fold
    /// per image. The error names the line of `folds`; the one check behind
    /// `furcate check` and cross-validation.
    pub fn check_folds(&self, images: usize) -> Result<()> {
        match self.config.training.folds {
            Some(k) if k > images => Err(self.error_at_key(
                "folds",
                0,
                format!("training.folds = {k}: the data has only {images} images"),
            )),
            _ => Ok(()),
        }
    }

    /// All of [`LoadedConfig::problems`] as one error.
    fn check(&self) -> Result<()> {
        combine(&self.path, self.problems())
    }

    /// Every problem of the configuration (empty when it is valid), each
    /// naming its line where one is known.
    pub fn problems(&self) -> Vec<Error> {
        self.problems_with(true, true)
    }

    /// [`LoadedConfig::problems`], leaving out a missing `[[heads]]` unless
    /// `heads`, and a missing `[data]` source unless `data`.
    fn problems_with(&self, heads: bool, data: bool) -> Vec<Error> {
        let mut errors = Vec::new();
        let c = &self.config;
        if heads && c.heads.is_empty() {
            errors.push(Error::config(&self.path, "no [[heads]]: declare at least one head"));
        }
        for (i, message) in crate::head::head_name_problems(c.heads.iter().map(|h| h.name())) {
            // The line of this head's name: earlier heads of the same name come first.
            let name = c.heads[i].name();
            let earlier = c.heads[..i].iter().filter(|h| h.name() == name).count();
            errors.push(self.error_at_nth(&format!("\"{name}\""), earlier, message));
        }
        match (&c.data.manifest, &c.data.folders) {
            (None, None) if data => {
                errors.push(self.error_at("[data]", "[data] needs `manifest` (a CSV) or `folders`"))
            }
            (Some(_), Some(_)) => {
                errors.push(self.error_at("[data]", "[data] takes `manifest` or `folders`, not both"))
            }
            _ => {}
        }
        if let Err((key, m)) = c.data.validate() {
            errors.push(self.error_at_key(key, 0, m));
        }
        let t = &c.training;
        if !(t.test_fraction > 0.0 && t.test_fraction < 1.0) {
            errors.push(self.error_at("test_fraction", "training.test_fraction must be in (0, 1)"));
        }
        if t.validation_fraction.is_some_and(|v| !(0.0..1.0).contains(&v)) {
            errors
                .push(self.error_at("validation_fraction", "training.validation_fraction must be in [0, 1)"));
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            errors.push(self.error_at("learning_rate", "training.learning_rate must be positive"));
        }
        if t.folds.is_some_and(|k| k < 2) {
            errors.push(self.error_at_key("folds", 0, "training.folds must be at least 2"));
        }
        if t.folds.is_some() && c.data.tile.is_some() {
            errors.push(self.error_at_key(
                "folds",
                0,
                "training.folds with data.tile is not supported yet (the folds would have to keep each \
                 image's tiles together); leave out one of them",
            ));
        }
        if t.folds.is_some() && !c.data.augment.is_empty() {
            errors.push(self.error_at_key(
                "folds",
                0,
                "training.folds with data.augment is not supported yet (the folds would have to keep each \
                 image's views together); leave out one of them",
            ));
        }
        if t.epochs == 0 {
            errors.push(self.error_at("epochs", "training.epochs must be at least 1"));
        }
        if t.patience.is_some() && t.validation_fraction == Some(0.0) {
            errors.push(self.error_at(
                "patience",
                "training.patience needs a validation part: set training.validation_fraction",
            ));
        }
        for (i, v) in t.weight_decay.values().iter().enumerate() {
            if !(v.is_finite() && *v >= 0.0) {
                errors.push(self.error_at(
                    "weight_decay",
                    format!("training.weight_decay[{i}] = {v}: every value must be finite and >= 0"),
                ));
            }
        }
        if matches!(&t.weight_decay, WeightDecay::Grid(g) if g.is_empty()) {
            errors.push(self.error_at("weight_decay", "training.weight_decay = []: list at least one value"));
        }
        if t.optimizer == OptimizerKind::Lbfgs && t.batch_size > 0 {
            errors.push(self.error_at(
                "batch_size",
                format!(
                    "training.batch_size = {}: optimizer = \"lbfgs\" is full-batch; remove batch_size \
                     (or set it to 0)",
                    t.batch_size
                ),
            ));
        }
        if let Err((key, m)) = t.propagation.validate() {
            errors.push(self.error_at_key(key, 0, m));
        }
        if !t.semi_supervised.is_off() && t.folds.is_some() {
            errors.push(self.error_at_key(
                "semi_supervised",
                0,
                "training.semi_supervised with training.folds is not supported yet: cross-validate the \
                 supervised heads, or leave out folds",
            ));
        }
        if t.transductive && t.semi_supervised.is_off() {
            errors.push(self.error_at_key(
                "transductive",
                0,
                "training.transductive = true has no effect with semi_supervised = \"off\": set \
                 semi_supervised = \"auto\" or \"propagation\", or remove transductive",
            ));
        }
        if !c.data.unlabelled.is_empty() && t.folds.is_some() {
            errors.push(self.error_at_key(
                "unlabelled",
                0,
                "data.unlabelled with training.folds is not supported yet (the folds would score \
                 images without labels); leave out one of them",
            ));
        }
        if t.lbfgs.history_size == 0 {
            errors.push(self.error_at("history_size", "training.lbfgs.history_size must be at least 1"));
        }
        c.extractor
            .validate()
            .map_err(|e| {
                let needle =
                    if section_has(&self.text, "[extractor]", "taps") { "taps" } else { "trainable_stages" };
                self.error_at_key(needle, 0, e)
            })
            .err()
            .into_iter()
            .for_each(|e| errors.push(e));
        if let Err(e) = self.check_taps() {
            errors.push(e);
        }
        if let Some(m) = c.standardise_conflict() {
            errors.push(self.error_at("standardise_features", m));
        }
        if c.runtime.threads == Some(0) {
            errors.push(self.error_at_key("threads", 0, "runtime.threads must be at least 1"));
        }
        if let Err(m) = crate::extractor::check_input_size(c.extractor.input_size()) {
            errors.push(self.error_at("size", format!("extractor.{m}")));
        }
        errors
    }
}

impl LoadedConfig {
    /// Checks every `taps` list (of the trunk and the heads) against the
    /// extractor's taps, naming the line of the offending key.
    fn check_taps(&self) -> Result<()> {
        let c = &self.config;
        let valid = c.extractor.tap_names();
        let check = |names: &[String], whose: &str, nth: usize| -> Result<()> {
            crate::extractor::taps::check_tap_names(whose, names, &valid).map_err(|e| match e {
                Error::Invalid(m) => self.error_at_key("taps", nth, m),
                e => e,
            })
        };
        // `taps` lines in file order: the extractor's, the trunk's, then the heads'.
        let mut nth = usize::from(section_has(&self.text, "[extractor]", "taps"));
        if let Some(names) = c.trunk.as_ref().and_then(|t| t.taps.as_ref()) {
            check(names, "[trunk]", nth)?;
            nth += 1;
        }
        for h in &c.heads {
            match h.taps() {
                Some(TapSelection::List(names)) => {
                    check(names, &format!("head `{}`", h.name()), nth)?;
                    nth += 1;
                }
                Some(TapSelection::Auto) => nth += 1,
                None => {}
            }
        }
        Ok(())
    }
}

/// No error for no `errors`, the error for one, one error listing them for more.
fn combine(path: &Path, mut errors: Vec<Error>) -> Result<()> {
    if errors.len() <= 1 {
        return errors.pop().map_or(Ok(()), Err);
    }
    let lines: Vec<String> = errors
        .iter()
        .map(|e| match e {
            Error::Config { message, .. } => message.clone(),
            other => other.to_string(),
        })
        .collect();
    Err(Error::config(path, format!("{} problems:\n  {}", lines.len(), lines.join("\n  "))))
}

/// Whether the table `header` of `text` has a line starting with `key`.
fn section_has(text: &str, header: &str, key: &str) -> bool {
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with('[') {
            inside = l.starts_with(header);
        } else if inside && l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
            return true;
        }
    }
    false
}

/// toml's message already names the line and shows it; keep it on one block.
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim_end().replace("TOML parse error at ", "")
}

/// Per `[[heads]]` entry of `text`: the 1-based lines where its table and
/// its `type` start (`None` where unknown; empty when the text does not parse).
fn head_lines(text: &str) -> Vec<(Option<usize>, Option<usize>)> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        heads: Vec<toml::Spanned<Head>>,
    }
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "type", default)]
        type_name: Option<toml::Spanned<toml::Value>>,
    }
    let line = |at: usize| text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1;
    let Ok(doc) = toml::from_str::<Doc>(text) else { return Vec::new() };
    doc.heads
        .iter()
        .map(|h| (Some(line(h.span().start)), h.get_ref().type_name.as_ref().map(|t| line(t.span().start))))
        .collect()
}

/// The 1-based number of the `nth` (0-based) line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str, nth: usize) -> Option<usize> {
    text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(nth).map(|(i, _)| i + 1)
}
