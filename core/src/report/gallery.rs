//! The micrographs of a report: per class head the misclassified images, per
//! value head the worst predicted ones, and for a tiled run each image with
//! its tiles' predictions laid over it (the spatial map a metallographer
//! reads). Thumbnails are PNGs embedded as `data:` URIs, so the page stays
//! one self-contained file; every gallery is capped.
//!
//! The run hands the report its scored images as typed values
//! ([`ScoredImages`]) while it writes the run folder; a report drawn later
//! from the folder alone has no galleries.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use image::DynamicImage;

use super::html::{esc, number_text};
use crate::data::tiles::Rect;
use crate::head::Prediction;
use crate::{Error, Result};

/// The most misclassified images shown per class head.
pub const MAX_MISCLASSIFIED: usize = 24;
/// The most worst-predicted images shown per value head.
pub const MAX_WORST: usize = 12;
/// The most tiled images mapped per head.
pub const MAX_TILE_MAPS: usize = 12;
/// The longest side of a gallery thumbnail, in pixels.
const THUMB: u32 = 160;
/// The longest side of a tile map's image, in pixels.
const MAP: u32 = 320;

/// The scored images of a run, with every head's prediction of each.
#[derive(Debug, Clone, Default)]
pub struct ScoredImages {
    /// What the images are: `test`, or `out-of-fold` (a cross-validated run).
    pub part: String,
    /// Each image's file.
    pub files: Vec<PathBuf>,
    /// Each image's name as the data lists it.
    pub names: Vec<String>,
    /// Per head, in model order.
    pub heads: Vec<HeadImages>,
    /// Tiled runs: per image, its tiles and their predictions.
    pub tiles: Option<Vec<Vec<TileScore>>>,
}

/// One head's labels and predictions of the scored images.
#[derive(Debug, Clone, Default)]
pub struct HeadImages {
    /// The head.
    pub name: String,
    /// Its classes, for a class head (the colours of its tile map).
    pub classes: Option<Vec<String>>,
    /// Each image's true label (`None`: unlabelled).
    pub truth: Vec<Option<String>>,
    /// Each image's prediction (a tiled run's: aggregated over its tiles).
    pub predicted: Vec<Prediction>,
}

/// One tile of a tiled image and every head's prediction of it.
#[derive(Debug, Clone)]
pub struct TileScore {
    /// Where the tile is, in the image file's pixels.
    pub rect: Rect,
    /// Per head, in model order.
    pub predicted: Vec<Prediction>,
}

/// The images a class head got wrong, most confident first: `(image, true
/// label, predicted label, probability)`.
pub fn misclassified(head: &HeadImages) -> Vec<(usize, &str, &str, f64)> {
    let mut wrong: Vec<(usize, &str, &str, f64)> = head
        .truth
        .iter()
        .zip(&head.predicted)
        .enumerate()
        .filter_map(|(i, (truth, p))| match (truth.as_deref().map(str::trim), p) {
            (Some(t), Prediction::Class { label, probability }) if !t.is_empty() && t != label => {
                Some((i, t, label.as_str(), *probability))
            }
            _ => None,
        })
        .collect();
    wrong.sort_by(|a, b| b.3.total_cmp(&a.3).then(a.0.cmp(&b.0)));
    wrong
}

/// The images of a value head by absolute error, worst first: `(image, true,
/// predicted)` (unlabelled or non-numeric labels left out).
pub fn worst_values(head: &HeadImages) -> Vec<(usize, f64, f64)> {
    let mut rows: Vec<(usize, f64, f64)> = head
        .truth
        .iter()
        .zip(&head.predicted)
        .enumerate()
        .filter_map(|(i, (truth, p))| {
            let t = truth.as_deref()?.trim().parse::<f64>().ok().filter(|t| t.is_finite())?;
            match p {
                Prediction::Value { value, .. } if value.is_finite() => Some((i, t, *value)),
                _ => None,
            }
        })
        .collect();
    rows.sort_by(|a, b| (b.2 - b.1).abs().total_cmp(&(a.2 - a.1).abs()).then(a.0.cmp(&b.0)));
    rows
}

/// The gallery HTML of head `h` of `images`: its misclassified or worst
/// predicted images, and its tile maps.
pub(super) fn head_gallery(images: &ScoredImages, h: usize) -> String {
    let Some(head) = images.heads.get(h) else { return String::new() };
    let mut out = String::from("<div class=\"micrographs\">\n");
    let part = esc(&images.part);
    let is_class = head.predicted.iter().any(|p| matches!(p, Prediction::Class { .. }));
    if is_class {
        let wrong = misclassified(head);
        let _ = writeln!(
            out,
            "<h3>Misclassified {part} images ({} of {} labelled{})</h3>",
            wrong.len(),
            head.truth.iter().flatten().filter(|t| !t.trim().is_empty()).count(),
            shown_of(wrong.len(), MAX_MISCLASSIFIED)
        );
        if wrong.is_empty() {
            let _ = writeln!(out, "<p>Every labelled {part} image was classified right.</p>");
        }
        out.push_str("<div class=\"gallery misclassified\">\n");
        for &(i, truth, predicted, p) in wrong.iter().take(MAX_MISCLASSIFIED) {
            let caption =
                format!("true <b>{}</b>, predicted <b>{}</b> (p = {:.3})", esc(truth), esc(predicted), p);
            card(&mut out, images, i, &caption);
        }
        out.push_str("</div>\n");
    } else {
        let worst = worst_values(head);
        if !worst.is_empty() {
            let _ = writeln!(
                out,
                "<h3>Worst predicted {part} images (the {} largest errors of {})</h3>",
                worst.len().min(MAX_WORST),
                worst.len()
            );
            out.push_str("<div class=\"gallery worst\">\n");
            for &(i, truth, predicted) in worst.iter().take(MAX_WORST) {
                let caption = format!(
                    "true <b>{}</b>, predicted <b>{}</b> (error {})",
                    esc(&number_text(truth)),
                    esc(&number_text(predicted)),
                    esc(&number_text(predicted - truth))
                );
                card(&mut out, images, i, &caption);
            }
            out.push_str("</div>\n");
        }
    }
    if let Some(tiles) = &images.tiles {
        tile_maps(&mut out, images, tiles, h);
    }
    out.push_str("</div><!-- /micrographs -->\n");
    out
}

/// `; showing the first N` when `n` is over the cap.
fn shown_of(n: usize, cap: usize) -> String {
    if n > cap {
        format!("; showing the first {cap}")
    } else {
        String::new()
    }
}

/// One thumbnail with the image's name and `caption` (HTML).
fn card(out: &mut String, images: &ScoredImages, i: usize, caption: &str) {
    let name = images.names.get(i).map_or("", String::as_str);
    let img = match images.files.get(i).map(|f| thumbnail(f, THUMB)) {
        Some(Ok(t)) => format!("<img alt=\"{}\" src=\"data:image/png;base64,{}\">", esc(name), t.base64),
        Some(Err(e)) => format!("<p class=\"note\">{}</p>", esc(&e.to_string())),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "<figure class=\"card\">{img}<figcaption><code class=\"file\">{}</code><br>{caption}</figcaption></figure>",
        esc(name)
    );
}

/// Up to [`MAX_TILE_MAPS`] images of head `h`, each with its tiles coloured
/// by the head's prediction (classes by colour, values on a blue-to-red
/// scale over every mapped tile), each tile's prediction in its tooltip.
fn tile_maps(out: &mut String, images: &ScoredImages, tiles: &[Vec<TileScore>], h: usize) {
    let shown: Vec<usize> = (0..tiles.len()).filter(|&i| !tiles[i].is_empty()).take(MAX_TILE_MAPS).collect();
    if shown.is_empty() {
        return;
    }
    let head = &images.heads[h];
    let values: Vec<f64> = shown
        .iter()
        .flat_map(|&i| &tiles[i])
        .filter_map(|t| match t.predicted.get(h) {
            Some(Prediction::Value { value, .. }) if value.is_finite() => Some(*value),
            _ => None,
        })
        .collect();
    let range = values.iter().fold(None, |r: Option<(f64, f64)>, &v| match r {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    });
    let mut classes: Vec<String> = head.classes.clone().unwrap_or_default();
    for t in shown.iter().flat_map(|&i| &tiles[i]) {
        if let Some(Prediction::Class { label, .. }) = t.predicted.get(h) {
            if !classes.contains(label) {
                classes.push(label.clone());
            }
        }
    }
    let _ = writeln!(
        out,
        "<h3>Tile map of the {} images ({} of {})</h3>\n<p>Each tile coloured by its own prediction; hover \
         for its value. The caption gives the image's aggregated prediction.</p>",
        esc(&images.part),
        shown.len(),
        tiles.iter().filter(|t| !t.is_empty()).count()
    );
    let legend: Vec<String> = match range {
        Some((lo, hi)) if classes.is_empty() => vec![format!(
            "<span class=\"swatch\" style=\"background:{}\"></span>{} \
             <span class=\"swatch\" style=\"background:{}\"></span>{}",
            value_colour(0.0),
            esc(&number_text(lo)),
            value_colour(1.0),
            esc(&number_text(hi))
        )],
        _ => classes
            .iter()
            .enumerate()
            .map(|(k, c)| {
                format!("<span class=\"swatch\" style=\"background:{}\"></span>{}", class_colour(k), esc(c))
            })
            .collect(),
    };
    let _ = writeln!(out, "<p class=\"legend\">{}</p>\n<div class=\"gallery tiles\">", legend.join(" "));
    for &i in &shown {
        let name = images.names.get(i).map_or("", String::as_str);
        let thumb = images.files.get(i).map(|f| thumbnail(f, MAP));
        let (w, h_px, href) = match thumb {
            Some(Ok(t)) => (t.width, t.height, format!("data:image/png;base64,{}", t.base64)),
            _ => {
                let w = tiles[i].iter().map(|t| t.rect.x + t.rect.width).max().unwrap_or(1);
                let hh = tiles[i].iter().map(|t| t.rect.y + t.rect.height).max().unwrap_or(1);
                (w, hh, String::new())
            }
        };
        let scale = MAP as f64 / w.max(h_px).max(1) as f64;
        let _ = write!(
            out,
            "<figure class=\"card\"><svg class=\"tilemap\" viewBox=\"0 0 {w} {h_px}\" width=\"{}\" height=\"{}\" \
             xmlns=\"http://www.w3.org/2000/svg\">",
            (w as f64 * scale.min(1.0)).round(),
            (h_px as f64 * scale.min(1.0)).round()
        );
        if !href.is_empty() {
            let _ = write!(out, "<image href=\"{href}\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h_px}\"/>");
        }
        for t in &tiles[i] {
            let (fill, text) = match t.predicted.get(h) {
                Some(Prediction::Class { label, probability }) => {
                    let k = classes.iter().position(|c| c == label).unwrap_or(0);
                    (class_colour(k).to_string(), format!("{label} (p = {probability:.3})"))
                }
                Some(Prediction::Value { value, .. }) => {
                    let share =
                        range.map_or(0.5, |(lo, hi)| if hi > lo { (value - lo) / (hi - lo) } else { 0.5 });
                    (value_colour(share), number_text(*value))
                }
                None => continue,
            };
            let r = t.rect;
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" fill-opacity=\"0.45\" \
                 stroke=\"#fff\" stroke-width=\"{}\"><title>{}</title></rect>",
                r.x,
                r.y,
                r.width,
                r.height,
                (1.0 / scale).max(1.0),
                esc(&format!("tile x{} y{}: {text}", r.x, r.y))
            );
        }
        out.push_str("</svg>");
        let aggregate = match head.predicted.get(i) {
            Some(Prediction::Class { label, probability }) => format!("{label} (p = {probability:.3})"),
            Some(Prediction::Value { value, .. }) => number_text(*value),
            None => String::new(),
        };
        let truth = head.truth.get(i).cloned().flatten().unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            out,
            "<figcaption><code class=\"file\">{}</code><br>true <b>{}</b>, image predicted <b>{}</b></figcaption></figure>",
            esc(name),
            esc(&truth),
            esc(&aggregate)
        );
    }
    out.push_str("</div>\n");
}

/// Colours of the classes on a tile map, in turn.
const CLASS_COLOURS: [&str; 8] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn class_colour(k: usize) -> &'static str {
    CLASS_COLOURS[k % CLASS_COLOURS.len()]
}

/// Blue (0) through white to red (1).
fn value_colour(share: f64) -> String {
    let s = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.5 };
    let (lo, mid, hi) = ([49.0, 54.0, 149.0], [247.0, 247.0, 247.0], [165.0, 0.0, 38.0]);
    let (a, b, t) = if s < 0.5 { (lo, mid, s * 2.0) } else { (mid, hi, (s - 0.5) * 2.0) };
    let c: Vec<u8> = (0..3).map(|k| (a[k] + (b[k] - a[k]) * t).round() as u8).collect();
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// A thumbnail, base64 PNG, with its size.
struct Thumbnail {
    base64: String,
    width: u32,
    height: u32,
}

/// The image at `path` at most `side` pixels on its longest side, as a PNG:
/// grey images stretched between their 0.5th and 99.5th percentiles (so
/// that a 12-bit micrograph in 16-bit samples is not black), colour ones as
/// they are. The original size is kept as the thumbnail's coordinates
/// (`width` x `height`) so that tiles, in the file's pixels, lie on it.
fn thumbnail(path: &Path, side: u32) -> Result<Thumbnail> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = crate::data::image::decode_image(&bytes, path)?;
    let (width, height) = (img.width(), img.height());
    let small = img.thumbnail(side, side);
    let shown = if small.color().has_color() {
        DynamicImage::ImageRgb8(small.to_rgb8())
    } else {
        let grey = small.to_luma32f();
        let mut sorted: Vec<f32> = grey.as_raw().iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f32::total_cmp);
        let at = |q: f64| sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied();
        let (lo, hi) = (at(0.005).unwrap_or(0.0), at(0.995).unwrap_or(1.0));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let out = image::GrayImage::from_fn(grey.width(), grey.height(), |x, y| {
            let v = (grey.get_pixel(x, y).0[0] - lo) / span;
            image::Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8])
        });
        DynamicImage::ImageLuma8(out)
    };
    let mut png = Vec::new();
    shown
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::data(path, format!("thumbnail: {e}")))?;
    Ok(Thumbnail { base64: STANDARD.encode(&png), width, height })
}
