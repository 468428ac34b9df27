//! Raw grey values to `[0, 1]`: how a micrograph's intensities are scaled
//! (`[data] intensity`), and what an image's file says about its bit depth.
//!
//! ```toml
//! [data]
//! intensity = "auto"          # "full_range" | "bit_depth" | "percentile" | [low, high]
//! percentiles = [0.5, 99.5]   # with "percentile"
//! ```
//!
//! - `full_range`: divide by the storage type's maximum (255, 65535): the
//!   behaviour before `intensity` existed.
//! - `bit_depth`: divide by `2^b - 1`, `b` the smallest of 8, 10, 12, 14, 16
//!   that holds the image's maximum (per image). A TIFF's own tags take
//!   precedence: `SMinSampleValue`/`SMaxSampleValue` give the range, and a
//!   `BitsPerSample` between 9 and 15 gives `b` (a `BitsPerSample` of 8 or 16
//!   is only the container, most cameras write 16 for 12-bit data, so it
//!   does not stop the detection).
//! - `percentile`: per image, stretch the `percentiles` (in %) of its values
//!   to 0 and 1, clipped.
//! - `[low, high]`: fixed raw values to 0 and 1, clipped (a calibrated detector).
//! - `auto` (default): `bit_depth` for 16-bit images, `full_range` otherwise,
//!   so 8-bit and binary images are read exactly as before.
//!
//! Statistics (maximum, percentiles) are taken over the image after `crop`,
//! at its full resolution, over every channel; the mapping is applied to the
//! resized pixels (every resampling furcate does is a convex combination of
//! pixels, so this is the same as mapping first, up to the storage type's
//! rounding).

use serde::{Deserialize, Serialize};

use image::DynamicImage;

/// `[data] intensity`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Intensity {
    /// `bit_depth` for 16-bit images, `full_range` otherwise.
    #[default]
    Auto,
    /// Divide by the storage type's maximum.
    FullRange,
    /// Divide by `2^b - 1` for the smallest `b` of 8, 10, 12, 14, 16 holding the maximum.
    BitDepth,
    /// Per-image stretch between two percentiles, clipped.
    Percentile,
    /// Fixed raw values mapped to 0 and 1, clipped.
    Fixed {
        /// Raw value mapped to 0.
        low: f64,
        /// Raw value mapped to 1.
        high: f64,
    },
}

impl Intensity {
    /// Whether this is the default (`auto`), for `skip_serializing_if`.
    pub fn is_auto(&self) -> bool {
        *self == Intensity::Auto
    }

    /// The mode as written in TOML (`auto`, `full_range`, ..., `[low, high]`).
    pub fn name(&self) -> String {
        match self {
            Intensity::Auto => "auto".into(),
            Intensity::FullRange => "full_range".into(),
            Intensity::BitDepth => "bit_depth".into(),
            Intensity::Percentile => "percentile".into(),
            Intensity::Fixed { low, high } => format!("[{low}, {high}]"),
        }
    }

    /// The mode an image stored as `storage` is read with (`auto` resolved).
    pub fn resolve(&self, storage: Storage) -> Intensity {
        match (self, storage) {
            (Intensity::Auto, Storage::U16) => Intensity::BitDepth,
            (Intensity::Auto, _) => Intensity::FullRange,
            (other, _) => *other,
        }
    }

    /// Whether pixels of an image stored as `storage` can differ from
    /// `full_range` under this mode (so cached features must be keyed apart).
    pub fn changes(&self, storage: Storage) -> bool {
        match self.resolve(storage) {
            Intensity::FullRange => false,
            Intensity::BitDepth => storage == Storage::U16,
            _ => true,
        }
    }
}

impl Serialize for Intensity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Intensity::Fixed { low, high } => [*low, *high].serialize(s),
            other => s.serialize_str(&other.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Intensity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use crate::values::WordOrNumbers;
        let expected = "\"auto\", \"full_range\", \"bit_depth\", \"percentile\" or [low, high]";
        let bad =
            |value: String| serde::de::Error::custom(format!("intensity = {value}: expected {expected}"));
        match WordOrNumbers::read(d, expected)? {
            WordOrNumbers::Word(w) => match w.as_str() {
                "auto" => Ok(Intensity::Auto),
                "full_range" => Ok(Intensity::FullRange),
                "bit_depth" => Ok(Intensity::BitDepth),
                "percentile" => Ok(Intensity::Percentile),
                _ => Err(bad(format!("\"{w}\""))),
            },
            WordOrNumbers::List(v) => match v[..] {
                [low, high] if low.is_finite() && high.is_finite() && high > low => {
                    Ok(Intensity::Fixed { low, high })
                }
                _ => Err(serde::de::Error::custom(format!(
                    "intensity = {v:?}: expected [low, high] with low < high"
                ))),
            },
            WordOrNumbers::Number(v) => Err(bad(v.to_string())),
        }
    }
}

/// How an image's samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// 8 bits per sample (also binary and palette images).
    U8,
    /// 16 bits per sample.
    U16,
    /// 32-bit float samples (taken as already in `[0, 1]`).
    F32,
}

impl Storage {
    /// The storage of a decoded colour type.
    pub fn of(color: image::ColorType) -> Storage {
        match color.bytes_per_pixel() / color.channel_count() {
            1 => Storage::U8,
            2 => Storage::U16,
            _ => Storage::F32,
        }
    }

    /// The largest raw value (`1.0` for floats): what `full_range` divides by.
    pub fn max(&self) -> f64 {
        match self {
            Storage::U8 => 255.0,
            Storage::U16 => 65535.0,
            Storage::F32 => 1.0,
        }
    }
}

/// The bit depths `bit_depth` chooses from.
pub const BIT_DEPTHS: [u8; 5] = [8, 10, 12, 14, 16];

/// The smallest of [`BIT_DEPTHS`] whose range `0 ..= 2^b - 1` holds `max`.
///
/// ```
/// use furcate_core::data::intensity::bit_depth_for;
/// assert_eq!(bit_depth_for(255.0), 8);
/// assert_eq!(bit_depth_for(256.0), 10);
/// assert_eq!(bit_depth_for(4095.0), 12);
/// assert_eq!(bit_depth_for(65535.0), 16);
/// ```
pub fn bit_depth_for(max: f64) -> u8 {
    BIT_DEPTHS.into_iter().find(|&b| max <= ((1u32 << b) - 1) as f64).unwrap_or(16)
}

/// What a TIFF file's tags say about its samples (all `None` for other formats).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TiffTags {
    /// `BitsPerSample` (of the first sample).
    pub bits_per_sample: Option<u16>,
    /// `SMinSampleValue`.
    pub min_sample: Option<f64>,
    /// `SMaxSampleValue`.
    pub max_sample: Option<f64>,
    /// Number of pages (images) in the file.
    pub pages: usize,
}

impl TiffTags {
    /// Reads the tags of the first page when `bytes` is a TIFF file; `None` otherwise.
    pub fn read(bytes: &[u8]) -> Option<TiffTags> {
        if !(bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") || bytes.starts_with(b"II+\0")) {
            return None;
        }
        let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes)).ok()?;
        use tiff::tags::Tag;
        fn first(v: tiff::decoder::ifd::Value) -> Option<f64> {
            use tiff::decoder::ifd::Value as V;
            match v {
                V::List(l) => l.into_iter().next().and_then(first),
                V::Byte(x) => Some(x as f64),
                V::Short(x) => Some(x as f64),
                V::Unsigned(x) => Some(x as f64),
                V::UnsignedBig(x) => Some(x as f64),
                V::SignedByte(x) => Some(x as f64),
                V::SignedShort(x) => Some(x as f64),
                V::Signed(x) => Some(x as f64),
                V::SignedBig(x) => Some(x as f64),
                V::Float(x) => Some(x as f64),
                V::Double(x) => Some(x),
                _ => None,
            }
        }
        let bits = d.find_tag(Tag::BitsPerSample).ok().flatten().and_then(first).map(|b| b as u16);
        let min = d.find_tag(Tag::SMinSampleValue).ok().flatten().and_then(first);
        let max = d.find_tag(Tag::SMaxSampleValue).ok().flatten().and_then(first);
        let mut pages = 1;
        while d.more_images() && pages < 1024 {
            if d.next_image().is_err() {
                break;
            }
            pages += 1;
        }
        Some(TiffTags { bits_per_sample: bits, min_sample: min, max_sample: max, pages })
    }
}

/// The affine map one image's raw values go through: `low -> 0`,
/// `high -> 1`, clipped; `None` in [`Mapping::range`] keeps the decoded
/// values (`full_range`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Mapping {
    /// `(low, high)` in raw units, or `None` for the decoded values as they are.
    pub range: Option<(f64, f64)>,
    /// The storage type's maximum (what the decoder divided by).
    pub storage_max: f64,
}

impl Mapping {
    /// Maps pixels decoded to `raw / storage_max` in place.
    pub fn apply(&self, data: &mut [f32]) {
        let Some((low, high)) = self.range else { return };
        let scale = self.storage_max / (high - low);
        let offset = low / (high - low);
        for v in data {
            *v = ((*v as f64) * scale - offset).clamp(0.0, 1.0) as f32;
        }
    }
}

/// The largest sample value of an image, in raw units (over every channel).
pub fn max_value(img: &DynamicImage) -> f64 {
    match img {
        DynamicImage::ImageLuma8(b) => b.iter().copied().max().unwrap_or(0) as f64,
        DynamicImage::ImageLuma16(b) => b.iter().copied().max().unwrap_or(0) as f64,
        DynamicImage::ImageLumaA16(b) => b.iter().step_by(2).copied().max().unwrap_or(0) as f64,
        DynamicImage::ImageRgb16(b) => b.iter().copied().max().unwrap_or(0) as f64,
        DynamicImage::ImageRgba16(b) => {
            b.chunks_exact(4).flat_map(|p| p[..3].iter().copied()).max().unwrap_or(0) as f64
        }
        other => {
            let max = Storage::of(other.color()).max();
            other.to_rgb32f().iter().fold(0f32, |m, &v| m.max(v)) as f64 * max
        }
    }
}

/// The `p`-th percentiles (in %) of an image's samples over every channel, in raw units.
pub fn percentiles(img: &DynamicImage, p: [f64; 2]) -> (f64, f64) {
    let max = Storage::of(img.color()).max();
    let mut v: Vec<f32> =
        if img.color().has_color() { img.to_rgb32f().into_raw() } else { img.to_luma32f().into_raw() };
    if v.is_empty() {
        return (0.0, max);
    }
    let mut at = |q: f64| {
        let k = ((q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize;
        *v.select_nth_unstable_by(k, f32::total_cmp).1 as f64 * max
    };
    (at(p[0]), at(p[1]))
}

/// What [`resolve`] found for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// The map to apply.
    pub mapping: Mapping,
    /// The detected bit depth of an integer image ([`bit_depth_for`] its
    /// maximum, or the TIFF's `BitsPerSample` when between 9 and 15).
    pub bit_depth: Option<u8>,
    /// The image's largest raw value.
    pub max: f64,
}

/// The mapping of one (cropped, full-resolution) image under `mode`.
pub fn resolve(
    mode: Intensity,
    percentile: [f64; 2],
    img: &DynamicImage,
    tags: Option<&TiffTags>,
) -> Resolved {
    let storage = Storage::of(img.color());
    let max = max_value(img);
    let tag_bits = tags.and_then(|t| t.bits_per_sample).filter(|b| (9..16).contains(b));
    let bit_depth = match storage {
        Storage::U8 => Some(8),
        Storage::U16 => Some(tag_bits.map(|b| b as u8).unwrap_or_else(|| bit_depth_for(max))),
        Storage::F32 => None,
    };
    let range = match mode.resolve(storage) {
        Intensity::Auto | Intensity::FullRange => None,
        Intensity::BitDepth => match (storage, tags.and_then(|t| t.max_sample)) {
            (Storage::U16, Some(hi)) => {
                let lo = tags.and_then(|t| t.min_sample).unwrap_or(0.0);
                (hi > lo).then_some((lo, hi))
            }
            (Storage::U16, None) => bit_depth.filter(|&b| b < 16).map(|b| (0.0, ((1u32 << b) - 1) as f64)),
            _ => None,
        },
        Intensity::Percentile => {
            let (lo, hi) = percentiles(img, percentile);
            Some((lo, if hi > lo { hi } else { lo + storage.max() * 1e-6 }))
        }
        Intensity::Fixed { low, high } => Some((low, high)),
    };
    Resolved { mapping: Mapping { range, storage_max: storage.max() }, bit_depth, max }
}
