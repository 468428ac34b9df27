//! `[data] tile_fit` ([`crate::data::tiles::TileFit`]): image rows beside
//! the tiles, for the heads that train on images.
//!
//! Each training and validation image gets one more row: the mean of its
//! tiles' features, with the image's labels, in the image's part, stratum
//! and group. A head that trains on images keeps its labels on those rows
//! only, a head that trains on tiles on the tiles only (its cells elsewhere
//! are emptied, so the masked losses and the scores see exactly its rows).
//! The test part is untouched: it is predicted per tile and averaged per
//! image, which for a linear head equals predicting the image row.
//!
//! **Views** (`[data] augment`): a transformed image is an image too. Its
//! image row is the mean of its tiles' features under that transformation
//! (one image row per image and transformation, each a view of the plain
//! image row), so a head that trains on images gets the views as extra
//! training rows exactly as a head on untiled images does.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use super::parts::FitData;
use crate::config::RunConfig;
use crate::data::{split::Split, Dataset};
use crate::Result;

/// The rows of a tiled run with the image rows added.
pub(crate) struct Pooled {
    pub(crate) data: Dataset,
    pub(crate) features: Tensor,
    pub(crate) strata: Vec<String>,
    pub(crate) groups: Vec<usize>,
    pub(crate) base: Option<Vec<usize>>,
    pub(crate) parts: Split,
    /// The rows to standardise on, when given ([`FitData::scale_rows`]):
    /// those tile rows and the image rows made of them alone.
    pub(crate) scale_rows: Option<Vec<usize>>,
}

impl Pooled {
    /// These rows as [`FitData`] (the taps of `layout`).
    pub(crate) fn rows<'a>(&'a self, layout: &'a crate::extractor::taps::TapLayout) -> FitData<'a> {
        FitData {
            data: &self.data,
            features: &self.features,
            layout,
            strata: &self.strata,
            groups: Some(&self.groups),
            base: self.base.as_deref(),
            scale_rows: self.scale_rows.as_deref(),
        }
    }
}

/// The rows of `rows` with the image rows added (see the module docs), or
/// `None` when the rows are not tiles or every head trains on tiles.
pub(crate) fn pool_images(config: &RunConfig, rows: &FitData, parts: &Split) -> Result<Option<Pooled>> {
    let Some(groups) = rows.groups.filter(|_| config.data.tile.is_some()) else { return Ok(None) };
    let fit = config.data.tile_fit;
    let per_image: Vec<bool> = config.heads.iter().map(|h| fit.per_image(h.stratify())).collect();
    if !per_image.contains(&true) {
        return Ok(None);
    }
    let n = rows.data.len();
    // A view follows its plain row in the order of `augment`: the k-th view
    // of every tile (k = 0: the tile itself) makes the image's k-th view.
    let view = |r: usize| rows.base.map_or(0, |b| r - b[r]);
    // Each training and validation image's (and view's) tiles, in the order the parts list them.
    let mut order: Vec<((usize, usize), bool)> = Vec::new();
    let mut tiles: BTreeMap<(usize, usize), Vec<i64>> = BTreeMap::new();
    for (&r, val) in parts.train.iter().map(|r| (r, false)).chain(parts.val.iter().map(|r| (r, true))) {
        let key = (groups[r], view(r));
        let entry = tiles.entry(key).or_default();
        if entry.is_empty() {
            order.push((key, val));
        }
        entry.push(r as i64);
    }
    let means: Vec<Tensor> = order
        .iter()
        .map(|(key, _)| {
            let idx = Tensor::from_slice(&tiles[key]).to_device(rows.features.device());
            rows.features.f_index_select(0, &idx)?.f_mean_dim(0, true, Kind::Float)
        })
        .collect::<std::result::Result<_, _>>()?;
    let features = if means.is_empty() {
        rows.features.shallow_clone()
    } else {
        Tensor::f_cat(&[rows.features, &Tensor::f_cat(&means, 0)?.f_to_kind(rows.features.kind())?], 0)?
    };
    let first: Vec<usize> = order.iter().map(|(key, _)| tiles[key][0] as usize).collect();
    let mut data = rows.data.subset(&(0..n).chain(first.iter().copied()).collect::<Vec<_>>());
    // Each column keeps its labels on the rows its heads train on.
    let mut modes: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for (h, &image) in config.heads.iter().zip(&per_image) {
        modes.entry(h.column()).or_default().push(image);
    }
    for (column, modes) in modes {
        let Some(cells) = data.columns.get_mut(column) else { continue };
        let blank = if modes.iter().all(|&m| m) {
            0..n
        } else if modes.iter().all(|&m| !m) {
            n..cells.len()
        } else {
            tracing::warn!(
                "column `{column}` is read by heads that train on images and by heads that train on \
                 tiles ([data] tile_fit): each of them trains on both"
            );
            0..0
        };
        for cell in &mut cells[blank] {
            *cell = None;
        }
    }
    let mut strata = rows.strata.to_vec();
    strata.extend(first.iter().map(|&r| rows.strata[r].clone()));
    let mut all_groups = groups.to_vec();
    all_groups.extend(order.iter().map(|((image, _), _)| *image));
    // Each image row's plain image row (its view 0, which comes first).
    let base = rows.base.map(|b| {
        let at: BTreeMap<(usize, usize), usize> =
            order.iter().enumerate().map(|(k, (key, _))| (*key, n + k)).collect();
        let mut base = b.to_vec();
        base.extend(
            order
                .iter()
                .enumerate()
                .map(|(k, ((image, _), _))| at.get(&(*image, 0)).copied().unwrap_or(n + k)),
        );
        base
    });
    let scale_rows = rows.scale_rows.map(|on| {
        let on_set: std::collections::HashSet<usize> = on.iter().copied().collect();
        let images = order
            .iter()
            .enumerate()
            .filter(|(_, (key, _))| tiles[key].iter().all(|&r| on_set.contains(&(r as usize))));
        on.iter().copied().chain(images.map(|(k, _)| n + k)).collect()
    });
    let mut parts = parts.clone();
    for (k, (_, val)) in order.iter().enumerate() {
        if *val { &mut parts.val } else { &mut parts.train }.push(n + k);
    }
    Ok(Some(Pooled { data, features, strata, groups: all_groups, base, parts, scale_rows }))
}
