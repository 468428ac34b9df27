//! `[data]`: where the labelled images are and how they are read.
//!
//! Re-exported by [`crate::config`], which reads the whole run configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::augment::Transform;
use super::intensity::Intensity;
use super::tiles::{Crop, TileConfig, TileFit};
use super::Duplicates;

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
    /// Transformations that leave every label unchanged ([`crate::data::augment`]):
    /// each adds one row per image, a view of it, used as an extra training row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augment: Vec<Transform>,
    /// Test-time augmentation: a prediction is the mean over the image's
    /// plain row and its `augment` views (mean probability of a class head,
    /// mean value of a value head), at validation, test and `furcate predict`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tta: bool,
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
