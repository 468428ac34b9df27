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

use crate::data::intensity::Intensity;
use crate::data::tiles::{Crop, TileConfig, TileFit};
use crate::data::Duplicates;
use crate::extractor::taps::TapSelection;
use crate::extractor::{BuildContext, ExtractorConfig};
use crate::head::HeadConfig;
use crate::model::TrunkConfig;
use crate::plugin::{self, PluginSet};
use crate::runtime::DeviceSpec;
use crate::{Error, Result};

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

/// How the heads' losses make the training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossWeighting {
    /// `Σ weight_i · loss_i` with each head's configured `weight`.
    #[default]
    Fixed,
    /// Learned homoscedastic-uncertainty weighting (Kendall, Gal and Cipolla,
    /// CVPR 2018): `Σ weight_i · (exp(-s_i) · loss_i + s_i / 2)` with one
    /// trained log-variance `s_i` per head (starting at 0, so the first epoch
    /// equals fixed weighting). A head whose loss stays high is down-weighted.
    Uncertainty,
}

/// How images become the extractor's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Resize the whole image to the square (aspect ratio not kept).
    #[default]
    Resize,
    /// Cut the largest centred square, then resize it.
    CenterCrop,
}

/// `[data]`: a manifest CSV, or one folder per class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A CSV with an image column (paths relative to the CSV) and one column per property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// A folder holding one sub-folder of images per class, for a single classification head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<PathBuf>,
    /// The manifest column holding image paths.
    #[serde(default = "default_image_column")]
    pub image_column: String,
    /// The label column the folder names fill, with `folders`.
    #[serde(default = "default_folder_column")]
    pub folder_column: String,
    /// How images are brought to the extractor's size.
    #[serde(default)]
    pub fit: Fit,
    /// Where extracted features are cached (default: `<furcate cache>/features`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_cache: Option<PathBuf>,
    /// How raw grey values become `[0, 1]` ([`crate::data::intensity`]; default `auto`).
    #[serde(default, skip_serializing_if = "Intensity::is_auto")]
    pub intensity: Intensity,
    /// The percentiles (in %) `intensity = "percentile"` stretches to 0 and 1.
    #[serde(default = "default_percentiles", skip_serializing_if = "is_default_percentiles")]
    pub percentiles: [f64; 2],
    /// Pixels removed from each side of every image first (a data bar), [`crate::data::tiles`].
    #[serde(default, skip_serializing_if = "Crop::is_none")]
    pub crop: Crop,
    /// Cut every image into tiles at native resolution ([`crate::data::tiles`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<TileConfig>,
    /// With `tile`: whether each head trains on the tiles or on the images
    /// (their tiles' mean features), [`crate::data::tiles::TileFit`]; default
    /// `auto` (value heads on images, discrete heads on tiles).
    #[serde(default, skip_serializing_if = "TileFit::is_auto")]
    pub tile_fit: TileFit,
    /// The scale to work at, micrometres per pixel: every image is resampled
    /// from its own `pixel_size_column` value to it before tiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_size: Option<f64>,
    /// The manifest column holding each image's micrometres per pixel.
    #[serde(default = "default_pixel_size_column", skip_serializing_if = "is_default_pixel_size_column")]
    pub pixel_size_column: String,
    /// Smallest side (after crop and rescale) an image may have; default: a
    /// quarter of the extractor's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u32>,
    /// What a manifest listing the same image file twice does: `error`
    /// (default) or `drop` (keep the first line, warn about the others).
    #[serde(default, skip_serializing_if = "Duplicates::is_error")]
    pub duplicates: Duplicates,
    /// Unlabelled images: folders, files or glob patterns (relative to the
    /// config file). They are extracted and cached like the others, always
    /// in the training part, and used by `[training] semi_supervised`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlabelled: Vec<String>,
}

fn default_percentiles() -> [f64; 2] {
    [0.5, 99.5]
}

fn is_default_percentiles(p: &[f64; 2]) -> bool {
    *p == default_percentiles()
}

fn default_pixel_size_column() -> String {
    "pixel_size".into()
}

fn is_default_pixel_size_column(c: &str) -> bool {
    c == default_pixel_size_column()
}

impl Default for DataConfig {
    fn default() -> Self {
        toml::from_str("").expect("every data field has a default")
    }
}

fn default_image_column() -> String {
    "file".into()
}

fn default_folder_column() -> String {
    "class".into()
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (L2 penalty added to the gradient when `weight_decay > 0`).
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// Full-batch L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS's
    /// algorithm, [`crate::train::lbfgs`]): the heads on cached features are a
    /// (nearly) convex problem, solved to its optimum. `epochs` is the most
    /// iterations; `weight_decay` is an L2 penalty; dropout is off (the
    /// objective must be deterministic); `batch_size` must be 0.
    Lbfgs,
}

/// `[training] weight_decay`: one value, a list to choose from, or `"auto"`.
///
/// The penalty is `weight_decay / 2 · ||w||²` on every trained weight except
/// biases and learned loss weights. A list (or `"auto"`: [`WeightDecay::AUTO_GRID`])
/// is tried value by value; the one with the best validation score is kept
/// (per head when the heads share no trunk) and recorded in `metrics.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightDecay {
    /// This value.
    Fixed(f64),
    /// The best of these, by validation.
    Grid(Vec<f64>),
}

impl WeightDecay {
    /// The grid `"auto"` tries: 10^-6 .. 10^-1.
    pub const AUTO_GRID: [f64; 6] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1];

    /// The values to try (one for a fixed value).
    pub fn values(&self) -> Vec<f64> {
        match self {
            WeightDecay::Fixed(v) => vec![*v],
            WeightDecay::Grid(g) => g.clone(),
        }
    }

    /// Whether this is `"auto"` (an exact head then searches a wider path of
    /// its own, [`crate::run::exact::AUTO_PATH`]).
    pub fn is_auto(&self) -> bool {
        matches!(self, WeightDecay::Grid(g) if *g == WeightDecay::AUTO_GRID)
    }

    /// Whether there is a choice to make.
    pub fn is_search(&self) -> bool {
        matches!(self, WeightDecay::Grid(g) if g.len() > 1)
    }
}

impl Default for WeightDecay {
    fn default() -> Self {
        WeightDecay::Fixed(0.0)
    }
}

impl Serialize for WeightDecay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            WeightDecay::Fixed(v) => s.serialize_f64(*v),
            WeightDecay::Grid(g) if *g == WeightDecay::AUTO_GRID => s.serialize_str("auto"),
            WeightDecay::Grid(g) => g.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WeightDecay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let expected = "a number, a list of numbers, or \"auto\"";
        match WordOrNumbers::read(d, expected)? {
            WordOrNumbers::Number(v) => Ok(WeightDecay::Fixed(v)),
            WordOrNumbers::List(g) => Ok(WeightDecay::Grid(g)),
            WordOrNumbers::Word(w) if w == "auto" => Ok(WeightDecay::Grid(WeightDecay::AUTO_GRID.to_vec())),
            WordOrNumbers::Word(w) => {
                Err(serde::de::Error::custom(format!("weight_decay = \"{w}\": expected {expected}")))
            }
        }
    }
}

/// A TOML value that is a word, a number or a list of numbers: what keys
/// such as `weight_decay` and `intensity` take before they are told apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WordOrNumbers {
    /// A string.
    Word(String),
    /// A number (an integer is read as a float).
    Number(f64),
    /// A list of numbers.
    List(Vec<f64>),
}

impl WordOrNumbers {
    /// Reads one from `d`; any other value is an error saying `expected`.
    pub(crate) fn read<'de, D: serde::Deserializer<'de>>(
        d: D,
        expected: &'static str,
    ) -> std::result::Result<Self, D::Error> {
        struct V(&'static str);
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WordOrNumbers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<WordOrNumbers, E> {
                Ok(WordOrNumbers::Word(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<WordOrNumbers, A::Error> {
                let mut list = Vec::new();
                while let Some(v) = seq.next_element::<f64>()? {
                    list.push(v);
                }
                Ok(WordOrNumbers::List(list))
            }
        }
        d.deserialize_any(V(expected))
    }
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Adam or AdamW.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Weight decay (L2): a number, a list to choose from by validation, or
    /// `"auto"` (see [`WeightDecay`]).
    #[serde(default)]
    pub weight_decay: WeightDecay,
    /// Rows per step; absent or 0 means full batch.
    #[serde(default)]
    pub batch_size: usize,
    /// Most epochs to train.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many epochs without a better validation loss (needs a validation part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Fraction of the samples held out for testing.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Fraction of the remaining samples used for validation (early stopping,
    /// best epoch, choices). Absent: see [`TrainingConfig::validation_fraction_for`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// Cross-validate in this many stratified folds before training the
    /// final model on all the labelled images (see [`crate::run::folds`]);
    /// absent: one train / test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// Seed of the split, the initialisation and the batch order.
    #[serde(default)]
    pub seed: u64,
    /// Where the heads train.
    #[serde(default = "default_train_device")]
    pub device: DeviceSpec,
    /// Standardise each feature with the training rows' mean and std before
    /// the trunk and heads (stored in the checkpoint). Default: on with
    /// `lbfgs` (an L2 penalty and a line search need features on one scale),
    /// off with Adam. Refused with `extractor.trainable_stages > 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardise_features: Option<bool>,
    /// L-BFGS settings, for `optimizer = "lbfgs"`.
    #[serde(default)]
    pub lbfgs: crate::train::lbfgs::LbfgsConfig,
    /// Write a resumable checkpoint every this many epochs.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// How the heads' losses are combined (`fixed` or `uncertainty`).
    #[serde(default)]
    pub loss_weighting: LossWeighting,
    /// Whether and how class heads also learn from the training part's
    /// unlabelled images (`[data] unlabelled`, manifest rows without labels);
    /// default `off` ([`SemiSupervised`]).
    #[serde(default, skip_serializing_if = "SemiSupervised::is_off")]
    pub semi_supervised: SemiSupervised,
    /// With `semi_supervised`: whether the test part's images (their pixels,
    /// never their labels) join the unlabelled ones. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transductive: bool,
    /// The graph and spreading of `semi_supervised = "propagation"`.
    #[serde(default, skip_serializing_if = "crate::train::propagate::PropagationConfig::is_default")]
    pub propagation: crate::train::propagate::PropagationConfig,
}

/// `[training] semi_supervised`: how the class heads use unlabelled images.
///
/// With `propagation`, the heads are first fitted on the labelled images;
/// each class head's standardised outputs (logits) on the labelled and
/// unlabelled images then make a k-nearest-neighbour graph, over which the
/// labels spread ([`crate::train::propagate`]); the heads are fitted again
/// with each unlabelled image carrying its spread label. Value heads use the
/// labelled images only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemiSupervised {
    /// Labelled images only.
    #[default]
    Off,
    /// Label spreading over a k-nearest-neighbour graph, then a second fit.
    Propagation,
}

impl SemiSupervised {
    /// Whether it is `off` (the default).
    pub fn is_off(&self) -> bool {
        *self == SemiSupervised::Off
    }
}

fn default_lr() -> f64 {
    1e-3
}
fn default_epochs() -> usize {
    1024
}
fn default_test_fraction() -> f64 {
    0.2
}
fn default_train_device() -> DeviceSpec {
    DeviceSpec::Cpu
}
fn default_checkpoint_every() -> usize {
    64
}

/// Below this many rows left after the test part, the default validation part is empty.
pub const MIN_ROWS_FOR_VALIDATION: usize = 50;

/// The default validation fraction, where a validation part is made.
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.1;

impl TrainingConfig {
    /// The validation fraction for a training part of `rows` rows (the rows
    /// left after the test part), and why, when it is the default.
    ///
    /// `validation_fraction` when it is set. Otherwise
    /// [`DEFAULT_VALIDATION_FRACTION`] when there are at least
    /// [`MIN_ROWS_FOR_VALIDATION`] rows (Adam and AdamW: the best epoch and
    /// early stopping need it), else 0. With `lbfgs` (no early stopping; the
    /// weight decay is chosen by k-fold inside the training part when the
    /// validation part would be small) the default is
    /// [`DEFAULT_VALIDATION_FRACTION`] only when that makes at least
    /// [`crate::run::choose::MIN_VALIDATION_ROWS`] rows, else 0, so that no
    /// row is kept from the fit for nothing.
    ///
    /// ```
    /// use furcate_core::config::TrainingConfig;
    ///
    /// let adam = TrainingConfig::default();
    /// assert_eq!(adam.validation_fraction_for(90).0, 0.1);
    /// assert_eq!(adam.validation_fraction_for(30).0, 0.0);
    /// let lbfgs: TrainingConfig = toml::from_str("optimizer = \"lbfgs\"").unwrap();
    /// assert_eq!(lbfgs.validation_fraction_for(90).0, 0.0);
    /// assert_eq!(lbfgs.validation_fraction_for(3150).0, 0.1);
    /// ```
    pub fn validation_fraction_for(&self, rows: usize) -> (f64, Option<String>) {
        if let Some(v) = self.validation_fraction {
            return (v, None);
        }
        let min_val = crate::run::choose::MIN_VALIDATION_ROWS;
        let lbfgs = self.optimizer == OptimizerKind::Lbfgs;
        let enough = if lbfgs {
            (DEFAULT_VALIDATION_FRACTION * rows as f64).round() as usize >= min_val
        } else {
            rows >= MIN_ROWS_FOR_VALIDATION
        };
        if enough {
            let why = format!(
                "validation part: {DEFAULT_VALIDATION_FRACTION} of the {rows} training rows (the default; \
                 set training.validation_fraction to change it)"
            );
            (DEFAULT_VALIDATION_FRACTION, Some(why))
        } else if lbfgs {
            let why = format!(
                "no validation part: with lbfgs and {rows} training rows, 10 % would be fewer than \
                 {min_val} rows, so choices are scored by k-fold inside the training part and every \
                 row is fitted (the default; set training.validation_fraction to change it)"
            );
            (0.0, Some(why))
        } else {
            let why = format!(
                "no validation part: only {rows} training rows (fewer than {MIN_ROWS_FOR_VALIDATION}; \
                 the default; set training.validation_fraction to change it)"
            );
            (0.0, Some(why))
        }
    }

    /// Whether features are standardised: `standardise_features`, by default
    /// on with `lbfgs` and off otherwise.
    pub fn standardise(&self) -> bool {
        self.standardise_features.unwrap_or(self.optimizer == OptimizerKind::Lbfgs)
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        toml::from_str("").expect("every training field has a default")
    }
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
                 semi_supervised = \"propagation\" or remove transductive",
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
