//! Feature extraction without training (`furcate extract`).

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::features::{features_for, Features};
use crate::config::LoadedConfig;
use crate::data::Dataset;
use crate::features::CacheStats;
use crate::progress::Progress;
use crate::Result;

/// What [`extract_from`] returns.
#[derive(Debug)]
pub struct Extracted {
    /// The rows: one per image, or one per tile named `<image>#<tile>`.
    pub data: Dataset,
    /// `[N, D]` features, `f32`.
    pub features: Tensor,
    /// The metadata of a features file (extractor, weights SHA-256).
    pub metadata: HashMap<String, String>,
    /// Rows read from the feature cache vs extracted now.
    pub stats: CacheStats,
}

/// Extracts the features of the images `cfg` names (no training).
pub fn extract(cfg: &LoadedConfig, progress: &mut dyn Progress) -> Result<Extracted> {
    let images = Dataset::load(&cfg.config.data, &cfg.dir())?;
    extract_from(cfg, &images, progress)
}

/// Extracts the features of the images of `images` with `cfg`'s extractor,
/// through the feature cache; returns the rows (one per image, or per tile
/// named `<image>#<tile>` for a tiled config) with their features and the
/// metadata of a features file.
pub fn extract_from(cfg: &LoadedConfig, images: &Dataset, progress: &mut dyn Progress) -> Result<Extracted> {
    crate::runtime::apply_config_threads(&cfg.config.runtime);
    let extractor = cfg.config.extractor.build(&cfg.build_context())?;
    let Features { features, plan, stats, .. } = features_for(cfg, extractor.as_ref(), images, progress)?;
    let mut data = images.subset(&plan.image);
    if plan.tiled {
        for (r, name) in data.names.iter_mut().enumerate() {
            name.push_str(&format!("#{}", plan.tile_label(r)));
        }
    }
    let mut meta = HashMap::new();
    meta.insert("extractor".into(), serde_json::to_string(&cfg.config.extractor).unwrap_or_default());
    if let Some(sha) = extractor.weights_sha256() {
        meta.insert("weights_sha256".into(), sha);
    }
    Ok(Extracted { data, features: features.to_kind(Kind::Float), metadata: meta, stats })
}
