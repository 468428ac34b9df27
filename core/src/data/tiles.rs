//! Geometry of large micrographs: `[data] crop` (the data bar) and `[data]
//! tile` (native-resolution tiles instead of one squashed image).
//!
//! ```toml
//! [data]
//! crop = { bottom = 64 }              # pixels removed on each side, first of all
//! tile = { size = 256, stride = 256 } # pixels of the cropped, rescaled image
//! ```
//!
//! **Training rows.** `[data] tile_fit` says what a head trains on when the
//! images are tiled ([`TileFit`]): the tiles, each carrying its image's label,
//! or the images, each one row whose features are the mean of its tiles'.
//! A property that is an average over the image (a phase fraction, a
//! porosity) is fitted on the image: a tile's own value scatters around the
//! image's, so regressing the image's label on a tile's features attenuates
//! the slope toward the mean. Predictions are made per tile either way, and
//! averaged per image, with the tiles' spread beside the mean.
//!
//! **Grid.** Along each side the grid holds `n = ⌊(side - size) / stride⌋ + 1`
//! whole tiles; a partial last tile is dropped and the grid is centred: the
//! pixels left over are split between the two margins (the extra pixel of an
//! odd remainder goes to the far margin). An image smaller than one tile on a
//! side is an error.

use serde::{Deserialize, Serialize};

/// `[data] crop`: pixels removed from each side of every image before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crop {
    /// Rows removed at the top.
    #[serde(default)]
    pub top: u32,
    /// Rows removed at the bottom (the microscope's data bar, usually).
    #[serde(default)]
    pub bottom: u32,
    /// Columns removed on the left.
    #[serde(default)]
    pub left: u32,
    /// Columns removed on the right.
    #[serde(default)]
    pub right: u32,
}

impl Crop {
    /// Whether nothing is removed.
    pub fn is_none(&self) -> bool {
        *self == Crop::default()
    }

    /// The part of a `width x height` image kept, or a message saying why nothing is.
    pub fn apply(&self, width: u32, height: u32) -> std::result::Result<Rect, String> {
        let across = self.left as u64 + self.right as u64;
        let down = self.top as u64 + self.bottom as u64;
        if across >= width as u64 || down >= height as u64 {
            return Err(format!(
                "crop (top {}, bottom {}, left {}, right {}) leaves nothing of the {width} x {height} image",
                self.top, self.bottom, self.left, self.right
            ));
        }
        Ok(Rect { x: self.left, y: self.top, width: width - across as u32, height: height - down as u32 })
    }
}

/// `[data] tile_fit`: the rows a head trains on when the images are tiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileFit {
    /// Value heads on images, discrete heads on tiles (the default): a
    /// value is an average over the image, while a class (a morphology) is
    /// what every tile of its image shows.
    #[default]
    Auto,
    /// Every head on images (the mean of each image's tiles' features).
    Image,
    /// Every head on tiles, each with its image's label.
    Tile,
}

impl TileFit {
    /// Whether it is the default.
    pub fn is_auto(&self) -> bool {
        *self == TileFit::Auto
    }

    /// Whether a head trains on images: `discrete` heads (those that
    /// stratify the split) do only with `image`, value heads except with `tile`.
    pub fn per_image(&self, discrete: bool) -> bool {
        match self {
            TileFit::Auto => !discrete,
            TileFit::Image => true,
            TileFit::Tile => false,
        }
    }
}

/// `[data] tile`: square tiles cut at native resolution, each resized to the extractor's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileConfig {
    /// Side of a tile, in pixels of the cropped, rescaled image.
    pub size: u32,
    /// Step between tiles (default: `size`, no overlap; smaller overlaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<u32>,
}

impl TileConfig {
    /// The step between tiles.
    pub fn step(&self) -> u32 {
        self.stride.unwrap_or(self.size)
    }

    /// The tiles of a `width x height` image, row by row, or a message when
    /// not one fits (see the module's **Grid**).
    pub fn grid(&self, width: u32, height: u32) -> std::result::Result<Vec<Rect>, String> {
        let (size, step) = (self.size, self.step().max(1));
        if size == 0 || width < size || height < size {
            return Err(format!("the image is {width} x {height}, smaller than one tile ({size} x {size})"));
        }
        let axis = |side: u32| -> Vec<u32> {
            let n = (side - size) / step + 1;
            let margin = (side - size - (n - 1) * step) / 2;
            (0..n).map(|i| margin + i * step).collect()
        };
        let (xs, ys) = (axis(width), axis(height));
        Ok(ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| Rect { x, y, width: size, height: size }))
            .collect())
    }
}

/// A rectangle of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}
