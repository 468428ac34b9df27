//! The run's scored images as the report shows them ([`ScoredImages`]):
//! every head's label and prediction of each test (or out-of-fold) image,
//! and for a tiled run each tile's predictions, placed in the image file's
//! pixels.

use crate::config::RunConfig;
use crate::data::prepare::{ImageInfo, RowPlan};
use crate::data::tiles::Rect;
use crate::data::Dataset;
use crate::head::Prediction;
use crate::model::MultiHeadModel;
use crate::report::{HeadImages, ScoredImages, TileScore};

/// The images `data` (`part`: what they are) with each head's predictions
/// (per head, per image) and, for a tiled run, the rows' `plan` and the
/// tiles' own predictions (per head, per row of `plan`).
pub(crate) fn scored_images(
    config: &RunConfig,
    model: &MultiHeadModel,
    data: &Dataset,
    part: &str,
    predictions: &[Vec<Prediction>],
    tiles: Option<(&RowPlan, &[Vec<Prediction>])>,
) -> ScoredImages {
    let heads = config
        .heads
        .iter()
        .zip(model.heads())
        .zip(predictions)
        .map(|((cfg, head), predicted)| HeadImages {
            name: cfg.name().to_string(),
            classes: head.classes().map(<[String]>::to_vec),
            truth: data.columns.get(cfg.column()).cloned().unwrap_or_else(|| vec![None; data.len()]),
            predicted: predicted.clone(),
        })
        .collect();
    let tiles = tiles.filter(|(plan, _)| plan.tiled).map(|(plan, rows)| {
        plan.groups()
            .iter()
            .enumerate()
            .map(|(i, group)| {
                group
                    .iter()
                    .filter_map(|&r| {
                        let rect = in_file(&plan.infos[i], plan.tile[r]?);
                        Some(TileScore { rect, predicted: rows.iter().map(|h| h[r].clone()).collect() })
                    })
                    .collect()
            })
            .collect()
    });
    ScoredImages {
        part: part.to_string(),
        files: data.files.clone(),
        names: data.names.clone(),
        heads,
        tiles,
    }
}

/// A tile of the cropped, rescaled image, in the file's pixels.
fn in_file(info: &ImageInfo, t: Rect) -> Rect {
    let s = if info.scale > 0.0 { info.scale } else { 1.0 };
    let at = |v: u32| (v as f64 / s).round() as u32;
    Rect { x: info.crop.x + at(t.x), y: info.crop.y + at(t.y), width: at(t.width), height: at(t.height) }
}
