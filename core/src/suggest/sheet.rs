//! The contact sheet of suggested images: thumbnails in a grid, each with
//! its rank and file name below it, as a PNG.
//!
//! A grey image's thumbnail is stretched from its darkest to its brightest
//! value (12-bit data in 16-bit files would look black otherwise); colour
//! images are shown as they are. Text is drawn with the report's embedded
//! font ([`crate::report`]).

use std::path::PathBuf;

use image::imageops::FilterType;
use image::DynamicImage;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::plots::{encode_rgb, ensure_font, FONT};
use crate::{Error, Result};

/// Side of a thumbnail, pixels.
pub const THUMB: u32 = 192;
/// Thumbnails per row, at most.
pub const COLUMNS: usize = 5;
const GAP: u32 = 12;
const CAPTION: u32 = 40;
const TITLE: u32 = 40;

/// One tile of the sheet: the image and the two caption lines below it.
#[derive(Debug, Clone)]
pub struct Tile {
    /// The image file.
    pub file: PathBuf,
    /// The first caption line (e.g. `#1  margin uncertainty 0.93`).
    pub caption: String,
}

/// `img` fitted into a `THUMB` square (aspect kept, centred on white) as RGB rows.
fn thumbnail(img: &DynamicImage) -> (u32, u32, Vec<u8>) {
    let small = img.resize(THUMB, THUMB, FilterType::Triangle);
    let (w, h) = (small.width(), small.height());
    let rgb: Vec<u8> = if small.color().has_color() {
        small.to_rgb8().into_raw()
    } else {
        let gray = small.to_luma32f().into_raw();
        let (lo, hi) =
            gray.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        gray.iter().flat_map(|&v| [(((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8; 3]).collect()
    };
    (w, h, rgb)
}

/// The last `max` characters of `s`, with `…` in front when cut.
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let kept: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{kept}")
}

/// The contact sheet of `tiles` under `title`, as PNG bytes. Errors name
/// an image that cannot be read.
pub fn contact_sheet(title: &str, tiles: &[Tile]) -> Result<Vec<u8>> {
    ensure_font();
    let cols = tiles.len().clamp(1, COLUMNS) as u32;
    let rows = tiles.len().div_ceil(COLUMNS).max(1) as u32;
    let cell_w = THUMB + GAP;
    let cell_h = THUMB + CAPTION + GAP;
    let width = (cols * cell_w + GAP).max(400);
    let height = TITLE + rows * cell_h + GAP;
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    let mut thumbs = Vec::with_capacity(tiles.len());
    for (i, t) in tiles.iter().enumerate() {
        let bytes = std::fs::read(&t.file).map_err(|e| Error::io(&t.file, e))?;
        let img = crate::data::image::decode_image(&bytes, &t.file)?;
        let (w, h, rgb) = thumbnail(&img);
        let (col, row) = ((i % COLUMNS) as u32, (i / COLUMNS) as u32);
        let x0 = GAP + col * cell_w + (THUMB - w) / 2;
        let y0 = TITLE + row * cell_h + (THUMB - h) / 2;
        for y in 0..h {
            let src = (y * w * 3) as usize;
            let dst = (((y0 + y) * width + x0) * 3) as usize;
            pixels[dst..dst + (w * 3) as usize].copy_from_slice(&rgb[src..src + (w * 3) as usize]);
        }
        thumbs.push((GAP + col * cell_w, TITLE + row * cell_h));
    }
    let draw = |pixels: &mut [u8]| -> crate::report::plots::DrawResult<()> {
        let root = BitMapBackend::with_buffer(pixels, (width, height)).into_drawing_area();
        let centred =
            |size: f64| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), (width as i32 / 2, 10), centred(20.0)))?;
        for (t, &(x, y)) in tiles.iter().zip(&thumbs) {
            let mid = (x + THUMB / 2) as i32;
            let top = (y + THUMB + 3) as i32;
            root.draw(&Rectangle::new(
                [(x as i32 - 1, y as i32 - 1), ((x + THUMB) as i32, (y + THUMB) as i32)],
                RGBColor(150, 150, 150).stroke_width(1),
            ))?;
            root.draw(&Text::new(tail(&t.caption, 30), (mid, top), centred(14.0)))?;
            let name = t.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            root.draw(&Text::new(tail(&name, 30), (mid, top + 18), centred(13.0)))?;
        }
        root.present()?;
        Ok(())
    };
    draw(&mut pixels).map_err(|e| Error::Invalid(format!("contact sheet: {e}")))?;
    encode_rgb(&pixels, width, height).map_err(|e| Error::Invalid(format!("contact sheet: {e}")))
}
