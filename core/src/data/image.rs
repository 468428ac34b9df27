//! Decoding micrographs (PNG, TIFF 8/16-bit, JPEG, BMP; grayscale or RGB) into
//! the extractor's square input.

use std::path::Path;

use image::{imageops::FilterType, DynamicImage};
use rayon::prelude::*;
use tch::Tensor;

use super::config::Fit;
use crate::{Error, Result};

/// One decoded image at the target size: `channels` planes of `size * size`
/// floats in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Side of the square.
    pub size: usize,
    /// Planar data, channel-major.
    pub data: Vec<f32>,
}

/// Decodes the image file at `path` and brings it to `size x size`.
pub fn load(path: &Path, size: usize, fit: Fit) -> Result<Pixels> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, path, size, fit)
}

/// Decodes image bytes (the format is guessed from the content); `path` names them in errors.
pub fn decode(bytes: &[u8], path: &Path, size: usize, fit: Fit) -> Result<Pixels> {
    Ok(to_pixels(&fit_image(decode_image(bytes, path)?, fit), size))
}

/// Decodes image bytes at their own size and type (the first page of a
/// multi-page TIFF); `path` names them in errors.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::data(path, format!("cannot read image: {e}")))?
        .decode()
        .map_err(|e| Error::data(path, format!("not a readable image: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::data(path, "the image is empty"));
    }
    Ok(img)
}

/// The part of `img` that [`Fit`] keeps (all of it, or the centred square).
pub fn fit_image(img: DynamicImage, fit: Fit) -> DynamicImage {
    match fit {
        Fit::Resize => img,
        Fit::CenterCrop => {
            let side = img.width().min(img.height());
            img.crop_imm((img.width() - side) / 2, (img.height() - side) / 2, side, side)
        }
    }
}

/// `img` resized to `size x size` (bilinear, aspect not kept) as planes in `[0, 1]`
/// (each sample divided by its type's maximum).
pub fn to_pixels(img: &DynamicImage, size: usize) -> Pixels {
    let gray = !img.color().has_color();
    let resized;
    let img = if img.width() as usize == size && img.height() as usize == size {
        img
    } else {
        resized = img.resize_exact(size as u32, size as u32, FilterType::Triangle);
        &resized
    };
    let data = if gray { gray_plane(img) } else { rgb_planes(img, size) };
    Pixels { channels: if gray { 1 } else { 3 }, size, data }
}

fn gray_plane(img: &DynamicImage) -> Vec<f32> {
    // 16-bit microscope TIFFs keep their full range.
    img.to_luma32f().into_raw()
}

fn rgb_planes(img: &DynamicImage, size: usize) -> Vec<f32> {
    let rgb = img.to_rgb32f().into_raw();
    let n = size * size;
    let mut out = vec![0f32; 3 * n];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = px[c];
        }
    }
    out
}

/// Decodes many images in parallel into one batch, calling `progress(done)`.
/// If any image is RGB, grayscale ones are replicated to 3 channels.
///
/// # Shapes
/// -> `[N, 1 | 3, size, size]`, `f32` in `[0, 1]`.
pub fn load_batch(paths: &[std::path::PathBuf], size: usize, fit: Fit) -> Result<Tensor> {
    let images = super::collect_in_order(paths.par_iter().map(|p| load(p, size, fit)))?;
    Ok(stack(&images, size))
}

/// Stacks decoded images into one batch (see [`load_batch`]).
///
/// # Shapes
/// -> `[N, 1 | 3, size, size]`.
pub fn stack(images: &[Pixels], size: usize) -> Tensor {
    let channels = if images.iter().any(|p| p.channels == 3) { 3 } else { 1 };
    let n = size * size;
    let mut data = Vec::with_capacity(images.len() * channels * n);
    for p in images {
        for c in 0..channels {
            let plane = if p.channels == 1 { 0 } else { c };
            data.extend_from_slice(&p.data[plane * n..(plane + 1) * n]);
        }
    }
    Tensor::from_slice(&data).view([images.len() as i64, channels as i64, size as i64, size as i64])
}
