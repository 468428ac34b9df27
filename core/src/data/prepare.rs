//! From image files to the extractor's rows: the `[data]` pipeline for real
//! micrographs.
//!
//! For each image, in this order:
//!
//! 1. **decode** (the first page of a multi-page TIFF, with a warning);
//! 2. **crop** (`[data] crop`, [`crate::data::tiles`]): the data bar goes first;
//! 3. **intensity** statistics on the cropped image at full resolution
//!    (`[data] intensity`, [`crate::data::intensity`]);
//! 4. **rescale** to `[data] pixel_size` from the image's own pixel size (the
//!    manifest's `pixel_size_column`), bilinear;
//! 5. **tile** (`[data] tile`): each tile is a row; without `tile` the whole
//!    image is one row, fitted as `[data] fit` says;
//! 6. each row resized to the extractor's input, then the intensity map applied;
//! 7. **augment** (`[data] augment`, [`crate::data::augment`]): after each
//!    row, one view of it per transformation, where the caller asks for them.
//!
//! Images whose side (after crop and rescale) is under `[data] min_size`
//! (default: a quarter of the extractor's input) are refused.
//!
//! **Cache rows.** Feature rows are named by the SHA-256 of the image file;
//! a row whose pixels differ from the plain whole-image read (a crop, a
//! rescale, a tile, an intensity map that changes this image) gets that
//! geometry and mapping appended to the name (`<sha>#crop0,64,0,0;tile0,256,256`),
//! so the cache folder of an extractor stays the same and 8-bit data under the
//! default settings keeps its cached features. A view made by `augment` has
//! its transformation appended last (`<sha>#hflip`, `<sha>#tile0,256,256;rot180`),
//! so it never takes the plain row's place.

use std::collections::BTreeMap;
use std::path::Path;

use image::imageops::FilterType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::Transform;
use super::config::DataConfig;
use super::image::{decode_image, fit_image, to_pixels, Pixels};
use super::intensity::{self, Intensity, Storage, TiffTags};
use super::split::Split;
use super::tiles::Rect;
use super::Dataset;
use crate::{fsutil, Error, Result};

/// An image more than this many times the extractor's input on a side, read
/// without `tile`, gets a warning; one this many times smaller is refused.
pub const SIDE_RATIO: u32 = 4;

impl DataConfig {
    /// Checks the `[data]` settings of real micrographs; an error is
    /// `(key, message)` so the caller can point at the key's line.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let [lo, hi] = self.percentiles;
        if !(0.0..=100.0).contains(&lo) || !(0.0..=100.0).contains(&hi) || lo >= hi {
            return Err((
                "percentiles",
                format!("data.percentiles = [{lo}, {hi}]: expected two percentiles 0 <= low < high <= 100"),
            ));
        }
        if let Some(t) = &self.tile {
            if t.size == 0 || t.step() == 0 {
                return Err((
                    "tile",
                    format!("data.tile: size ({}) and stride ({}) must be at least 1", t.size, t.step()),
                ));
            }
        }
        for (i, t) in self.augment.iter().enumerate() {
            if self.augment[..i].contains(t) {
                return Err(("augment", format!("data.augment lists \"{}\" twice", t.name())));
            }
        }
        if self.tta && self.augment.is_empty() {
            return Err((
                "tta",
                "data.tta = true averages over the views data.augment makes, and data.augment is empty: \
                 list the transformations that leave every label unchanged (e.g. augment = [\"hflip\", \
                 \"vflip\", \"rot180\"])"
                    .to_string(),
            ));
        }
        if let Some(p) = self.pixel_size {
            if !(p.is_finite() && p > 0.0) {
                return Err(("pixel_size", format!("data.pixel_size = {p}: must be a positive number")));
            }
        }
        Ok(())
    }
}

/// The pipeline of one `[data]` table for an extractor of input side `size`.
#[derive(Debug, Clone)]
pub struct Preprocess<'a> {
    /// The `[data]` settings.
    pub data: &'a DataConfig,
    /// The extractor's input side, in pixels.
    pub size: usize,
}

/// What the pipeline knows of one image before decoding its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    /// Width of the file's image.
    pub width: u32,
    /// Height of the file's image.
    pub height: u32,
    /// How its samples are stored.
    pub storage: Storage,
    /// Its bit depth (see [`intensity::Resolved::bit_depth`]); `None` for floats.
    pub bit_depth: Option<u8>,
    /// The TIFF tags, for TIFF files.
    pub tags: Option<TiffTags>,
    /// The kept part after `crop`.
    pub crop: Rect,
    /// Resampling factor to `[data] pixel_size` (1 without it).
    pub scale: f64,
    /// Tiles of the cropped, rescaled image; empty without `tile`.
    pub tiles: Vec<Rect>,
}

/// The rows a data set becomes: one per image, or one per tile; with
/// `[data] augment`, each followed by its views (the same image and tile,
/// transformed).
#[derive(Debug, Clone, Default)]
pub struct RowPlan {
    /// The image of each row.
    pub image: Vec<usize>,
    /// The tile of each row (`None`: the whole image).
    pub tile: Vec<Option<Rect>>,
    /// The transformation of each row (`None`: the row as read, a *plain*
    /// row). A plain row's views come right after it.
    pub transform: Vec<Option<Transform>>,
    /// The feature-cache name of each row.
    pub names: Vec<String>,
    /// Per image.
    pub infos: Vec<ImageInfo>,
    /// Whether the rows are tiles.
    pub tiled: bool,
}

impl RowPlan {
    /// The rows of the images `images`, in that order.
    pub fn rows_of(&self, images: &[usize]) -> Vec<usize> {
        let groups = self.groups();
        images.iter().flat_map(|&i| groups[i].iter().copied()).collect()
    }

    /// Each image's rows.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut g = vec![Vec::new(); self.infos.len()];
        for (r, &i) in self.image.iter().enumerate() {
            g[i].push(r);
        }
        g
    }

    /// The plan of the images `images` only (in that order), and the rows of
    /// `self` its rows are.
    pub fn subset(&self, images: &[usize]) -> (RowPlan, Vec<usize>) {
        let groups = self.groups();
        let mut sub = RowPlan { tiled: self.tiled, ..RowPlan::default() };
        let mut rows = Vec::new();
        for (new, &i) in images.iter().enumerate() {
            for &r in &groups[i] {
                sub.image.push(new);
                sub.tile.push(self.tile[r]);
                sub.transform.push(self.transform[r]);
                sub.names.push(self.names[r].clone());
                rows.push(r);
            }
            sub.infos.push(self.infos[i].clone());
        }
        (sub, rows)
    }

    /// Whether some rows are views (`[data] augment`).
    pub fn augmented(&self) -> bool {
        self.transform.iter().any(Option::is_some)
    }

    /// The plain row each row is a view of (itself for a plain row).
    pub fn base(&self) -> Vec<usize> {
        let mut last = 0;
        self.transform
            .iter()
            .enumerate()
            .map(|(r, t)| {
                if t.is_none() {
                    last = r;
                }
                last
            })
            .collect()
    }

    /// The plan of the plain rows only, and the rows of `self` its rows are.
    pub fn plain(&self) -> (RowPlan, Vec<usize>) {
        let rows: Vec<usize> = (0..self.image.len()).filter(|&r| self.transform[r].is_none()).collect();
        let plan = RowPlan {
            image: rows.iter().map(|&r| self.image[r]).collect(),
            tile: rows.iter().map(|&r| self.tile[r]).collect(),
            transform: vec![None; rows.len()],
            names: rows.iter().map(|&r| self.names[r].clone()).collect(),
            infos: self.infos.clone(),
            tiled: self.tiled,
        };
        (plan, rows)
    }

    /// Per plain row (in order), its rows: itself, then its views.
    pub fn views(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        for (r, t) in self.transform.iter().enumerate() {
            match (t, out.last_mut()) {
                (Some(_), Some(group)) => group.push(r),
                _ => out.push(vec![r]),
            }
        }
        out
    }

    /// The data set, strata and split of the images, made per row: each row
    /// has its image's labels and stratum, and goes to its image's part (the
    /// split is by image, never by tile or view).
    pub fn expand(
        &self,
        images: &Dataset,
        strata: Vec<String>,
        parts: &Split,
    ) -> (Dataset, Vec<String>, Split) {
        if !self.tiled && !self.augmented() {
            return (images.clone(), strata, parts.clone());
        }
        let rows = Split {
            train: self.rows_of(&parts.train),
            val: self.rows_of(&parts.val),
            test: self.rows_of(&parts.test),
        };
        let strata = self.image.iter().map(|&i| strata[i].clone()).collect();
        (images.subset(&self.image), strata, rows)
    }

    /// A short label of row `r`'s tile: `x256_y512` (empty for a whole image).
    pub fn tile_label(&self, r: usize) -> String {
        self.tile[r].map(|t| format!("x{}_y{}", t.x, t.y)).unwrap_or_default()
    }

    /// The summary of the rows (`intensity` the configured mode).
    pub fn summary(&self, intensity: Intensity) -> DataSummary {
        let mut bit_depths = BTreeMap::new();
        for info in &self.infos {
            let key = info.bit_depth.map(|b| format!("{b}-bit")).unwrap_or_else(|| "float".into());
            *bit_depths.entry(key).or_insert(0) += 1;
        }
        DataSummary {
            intensity: intensity.name(),
            bit_depths,
            images: self.infos.len(),
            tiles: self.tiled.then(|| self.transform.iter().filter(|t| t.is_none()).count()),
            views: self.augmented().then(|| self.transform.iter().filter(|t| t.is_some()).count()),
        }
    }
}

/// What a data set was read as: for the printed summary and `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// `[data] intensity` as configured.
    pub intensity: String,
    /// Images per detected bit depth (`"8-bit"`, `"12-bit"`, ..., `"float"`).
    pub bit_depths: BTreeMap<String, usize>,
    /// Images.
    pub images: usize,
    /// Tiles, when the images were tiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<usize>,
    /// Rows that are views of another (`[data] augment`), when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<usize>,
}

impl std::fmt::Display for DataSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let depths: Vec<String> = self.bit_depths.iter().map(|(k, n)| format!("{k} x {n}")).collect();
        write!(f, "data: {} images", self.images)?;
        if let Some(t) = self.tiles {
            write!(f, " -> {t} tiles")?;
        }
        if let Some(v) = self.views {
            write!(f, " + {v} views (augment)")?;
        }
        write!(f, "; intensity {} (bit depths: {})", self.intensity, depths.join(", "))
    }
}

impl Preprocess<'_> {
    /// Reads every image of `data` (hashing it and probing its header; a
    /// 16-bit image is decoded for its bit depth) and lays out its plain rows.
    /// Errors name the file (bad crop, too small, smaller than a tile) or the
    /// manifest line (pixel size).
    pub fn plan(&self, data: &Dataset) -> Result<RowPlan> {
        self.plan_augmented(data, &vec![false; data.len()])
    }

    /// [`Preprocess::plan`], each row of the images `augmented[i]` followed
    /// by one view per transformation of `[data] augment`.
    pub fn plan_augmented(&self, data: &Dataset, augmented: &[bool]) -> Result<RowPlan> {
        let pixel_sizes = self.pixel_sizes(data)?;
        let probed = super::collect_in_order(data.files.par_iter().zip(&pixel_sizes).map(|(f, px)| {
            let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
            Ok((fsutil::sha256_bytes(&bytes), self.probe(f, &bytes, *px)?))
        }))?;
        let mut plan = RowPlan { tiled: self.data.tile.is_some(), ..RowPlan::default() };
        for (i, (hash, info)) in probed.into_iter().enumerate() {
            let base = self.describe(&info);
            let rows: Vec<Option<Rect>> =
                if plan.tiled { info.tiles.iter().copied().map(Some).collect() } else { vec![None] };
            let views: &[Transform] = if augmented.get(i) == Some(&true) { &self.data.augment } else { &[] };
            for tile in rows {
                let mut parts = base.clone();
                if let Some(t) = tile {
                    parts.push(format!("tile{},{},{}", t.x, t.y, t.width));
                }
                for transform in std::iter::once(None).chain(views.iter().copied().map(Some)) {
                    let mut parts = parts.clone();
                    parts.extend(transform.map(|t| t.name().to_string()));
                    plan.names.push(if parts.is_empty() {
                        hash.clone()
                    } else {
                        format!("{hash}#{}", parts.join(";"))
                    });
                    plan.image.push(i);
                    plan.tile.push(tile);
                    plan.transform.push(transform);
                }
            }
            plan.infos.push(info);
        }
        Ok(plan)
    }

    /// The decoded rows `rows` of `plan` (each image decoded once), in that order.
    pub fn load_rows(&self, data: &Dataset, plan: &RowPlan, rows: &[usize]) -> Result<Vec<Pixels>> {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for &r in rows {
            match groups.last_mut() {
                Some((i, g)) if *i == plan.image[r] => g.push(r),
                _ => groups.push((plan.image[r], vec![r])),
            }
        }
        let decoded = super::collect_in_order(groups.par_iter().map(|(i, g)| {
            self.image_rows(
                &data.files[*i],
                &plan.infos[*i],
                g.iter().map(|&r| (plan.tile[r], plan.transform[r])),
            )
        }))?;
        Ok(decoded.into_iter().flatten().collect())
    }

    fn image_rows(
        &self,
        path: &Path,
        info: &ImageInfo,
        rows: impl Iterator<Item = (Option<Rect>, Option<Transform>)>,
    ) -> Result<Vec<Pixels>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut img = decode_image(&bytes, path)?;
        let c = info.crop;
        if (c.width, c.height) != (img.width(), img.height()) {
            img = img.crop_imm(c.x, c.y, c.width, c.height);
        }
        let resolved =
            intensity::resolve(self.data.intensity, self.data.percentiles, &img, info.tags.as_ref());
        if info.scale != 1.0 {
            let (w, h) = scaled(c, info.scale);
            img = img.resize_exact(w, h, FilterType::Triangle);
        }
        // A row's views come right after it: each tile is read once.
        let mut last: Option<(Option<Rect>, Pixels)> = None;
        Ok(rows
            .map(|(tile, transform)| {
                let px = match &last {
                    Some((t, px)) if *t == tile => px.clone(),
                    _ => {
                        let part = match tile {
                            Some(t) => img.crop_imm(t.x, t.y, t.width, t.height),
                            None => fit_image(img.clone(), self.data.fit),
                        };
                        let mut px = to_pixels(&part, self.size);
                        resolved.mapping.apply(&mut px.data);
                        last = Some((tile, px.clone()));
                        px
                    }
                };
                match transform {
                    Some(t) => Pixels { data: t.apply(&px.data, px.size), ..px },
                    None => px,
                }
            })
            .collect())
    }

    /// Each image's pixel size when `[data] pixel_size` is set, checked.
    fn pixel_sizes(&self, data: &Dataset) -> Result<Vec<Option<f64>>> {
        if self.data.pixel_size.is_none() {
            return Ok(vec![None; data.len()]);
        }
        let column = &self.data.pixel_size_column;
        let cells = data.columns.get(column).ok_or_else(|| {
            Error::data(
                &data.source,
                format!(
                    "data.pixel_size is set, but there is no column `{column}` (micrometres per pixel of \
                     each image; the column name is data.pixel_size_column)"
                ),
            )
        })?;
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let bad = |what: &str| {
                    Error::data(
                        &data.source,
                        format!("{} ({}): column `{column}` {what}", data.origins[i], data.names[i]),
                    )
                };
                let text = cell.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
                    bad("is empty; every image needs its pixel size (micrometres per pixel)")
                })?;
                match text.parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                    _ => Err(bad(&format!("= `{text}`: the pixel size must be a positive number"))),
                }
            })
            .collect()
    }

    /// Header, tags and geometry of one image.
    fn probe(&self, path: &Path, bytes: &[u8], pixel_size: Option<f64>) -> Result<ImageInfo> {
        use image::ImageDecoder;
        let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::data(path, format!("cannot read image: {e}")))?
            .into_decoder()
            .map_err(|e| Error::data(path, format!("not a readable image: {e}")))?;
        let (width, height) = decoder.dimensions();
        let storage = Storage::of(decoder.color_type());
        drop(decoder);
        let tags = TiffTags::read(bytes);
        if let Some(t) = tags.filter(|t| t.pages > 1) {
            tracing::warn!("{}: a TIFF of {} pages; only the first is read", path.display(), t.pages);
        }
        let crop = self.data.crop.apply(width, height).map_err(|m| Error::data(path, m))?;
        let bit_depth = match storage {
            Storage::U8 => Some(8),
            Storage::F32 => None,
            Storage::U16 => {
                let img = decode_image(bytes, path)?.crop_imm(crop.x, crop.y, crop.width, crop.height);
                let r = intensity::resolve(self.data.intensity, self.data.percentiles, &img, tags.as_ref());
                if self.data.intensity == Intensity::FullRange && r.max < Storage::U16.max() / 16.0 {
                    tracing::warn!(
                        "{}: a 16-bit image whose values reach only {} (less than 1/16 of the range) read \
                         with intensity = \"full_range\": it is nearly black; intensity = \"auto\" or \
                         \"bit_depth\" scales it by its bit depth",
                        path.display(),
                        r.max
                    );
                }
                r.bit_depth
            }
        };
        let scale = match (pixel_size, self.data.pixel_size) {
            (Some(own), Some(target)) => own / target,
            _ => 1.0,
        };
        let (w, h) = scaled(crop, scale);
        let min = self.data.min_size.unwrap_or((self.size as u32).div_ceil(SIDE_RATIO));
        let size_note = || {
            let mut s = format!("{width} x {height}");
            if (w, h) != (width, height) {
                s.push_str(&format!(", {w} x {h} after crop and rescale"));
            }
            s
        };
        if w < min || h < min {
            return Err(Error::data(
                path,
                format!(
                    "the image ({}) is too small: its sides must be at least {min} px for an extractor \
                     input of {} px (data.min_size overrides)",
                    size_note(),
                    self.size
                ),
            ));
        }
        let tiles = match &self.data.tile {
            Some(t) => t.grid(w, h).map_err(|m| Error::data(path, format!("{m} ({})", size_note())))?,
            None => {
                if w.max(h) > SIDE_RATIO * self.size as u32 {
                    tracing::warn!(
                        "{}: the image ({}) is more than {SIDE_RATIO}x the extractor's input ({} px) on a \
                         side and is squashed to it; consider `tile` in [data]",
                        path.display(),
                        size_note(),
                        self.size
                    );
                }
                Vec::new()
            }
        };
        Ok(ImageInfo { width, height, storage, bit_depth, tags, crop, scale, tiles })
    }

    /// The cache-name parts every row of an image shares (empty: read as plainly as ever).
    fn describe(&self, info: &ImageInfo) -> Vec<String> {
        let d = self.data;
        let mut parts = Vec::new();
        if !d.crop.is_none() {
            parts.push(format!("crop{},{},{},{}", d.crop.top, d.crop.bottom, d.crop.left, d.crop.right));
        }
        if info.scale != 1.0 {
            parts.push(format!("scale{}", info.scale));
        }
        if d.intensity.changes(info.storage) {
            let mode = d.intensity.resolve(info.storage);
            let extra = match mode {
                Intensity::Percentile => format!("{},{}", d.percentiles[0], d.percentiles[1]),
                _ => String::new(),
            };
            parts.push(format!("int{}{extra}", mode.name()));
        }
        parts
    }
}

/// The side lengths of `crop` resampled by `scale` (at least 1 px).
fn scaled(crop: Rect, scale: f64) -> (u32, u32) {
    if scale == 1.0 {
        return (crop.width, crop.height);
    }
    let side = |s: u32| ((s as f64 * scale).round() as u32).max(1);
    (side(crop.width), side(crop.height))
}
