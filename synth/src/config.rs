//! The generator's configuration: TOML in, validated [`SynthConfig`] out.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The default configuration, `configs/synthetic.toml`, embedded at build time:
/// the thesis's 7 morphologies x 10 volume fractions x 50 images of 128 x 128.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../configs/synthetic.toml");

/// Where the embedded default config says it comes from in messages.
pub const DEFAULT_CONFIG_ORIGIN: &str = "<embedded configs/synthetic.toml>";

/// Smallest allowed image side, in pixels.
pub const MIN_SIZE: usize = 32;
/// Largest allowed image side, in pixels (a few scratch buffers of size² floats per thread).
pub const MAX_SIZE: usize = 8192;
/// Most decimals a volume-fraction class label gets.
const MAX_LABEL_DECIMALS: usize = 6;

/// What to generate: image size and count, seed, volume-fraction classes and
/// morphologies. Read it with [`SynthConfig::from_toml_str`] or
/// [`SynthConfig::from_file`]; [`SynthConfig::default`] is the embedded
/// `configs/synthetic.toml`.
///
/// The data set has one class per (morphology, volume fraction) pair and
/// `images_per_class` images in each, so
/// `morphologies.len() * volume_fractions.len() * images_per_class` images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthConfig {
    /// Side of the square images, in pixels (at least [`MIN_SIZE`]). Default 128.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Images per (morphology, volume fraction) pair. Default 50.
    #[serde(default = "default_images_per_class")]
    pub images_per_class: usize,
    /// Global seed; image `i` uses a seed derived from this and `i`. Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Target white-phase fractions, one class each, each in (0, 1).
    /// Default 0.05, 0.10, ..., 0.50.
    #[serde(default = "default_volume_fractions")]
    pub volume_fractions: Vec<f64>,
    /// Spread of each image's target inside its class, as a fraction of the
    /// class's half-width (half the distance to the nearest other class), in
    /// [0, 1]. Default 0: every image hits its class value.
    #[serde(default)]
    pub jitter: f64,
    /// The morphologies. Default (when the key is absent): the 7 of the embedded config.
    #[serde(default = "default_morphologies")]
    pub morphologies: Vec<Morphology>,
}

/// One morphology class: a 3-D Gaussian filter and the plane of the section.
///
/// The 3-D material is white noise blurred by a Gaussian of covariance
/// `S = diag(sigma_x², sigma_y², sigma_z²)`, thresholded; an image is a planar
/// section of it (see [`Morphology::in_plane_covariance`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Morphology {
    /// Class name; letters, digits, `_` and `-` (it is part of file names).
    pub name: String,
    /// Gaussian width along the material's x axis, in pixels (> 0).
    pub sigma_x: f64,
    /// Gaussian width along y, in pixels (> 0).
    pub sigma_y: f64,
    /// Gaussian width along z, in pixels (> 0).
    pub sigma_z: f64,
    /// The section plane. Default `xy`.
    #[serde(default)]
    pub plane: Plane,
    /// In-plane rotation of the microstructure, degrees, from the image x axis
    /// toward the image y axis (rows go down). Default 0. The same as rotating
    /// the 3-D covariance about the plane's normal.
    #[serde(default)]
    pub rotation: f64,
}

/// The plane a 2-D image is cut from the 3-D material along.
///
/// In TOML: `"xy"`, `"xz"`, `"yz"`, or a normal vector `[a, b, c]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Plane {
    /// Image x = material x, image y = material y.
    #[default]
    Xy,
    /// Image x = material x, image y = material z.
    Xz,
    /// Image x = material y, image y = material z.
    Yz,
    /// The plane through the origin with this normal (need not be unit length).
    /// Image x is the projection of the material's x axis onto the plane (of
    /// its y axis when the normal is along x), image y is `n × (image x)`; so
    /// `[0, 0, 1]` is `xy` and `[1, 0, 0]` is `yz`.
    Normal([f64; 3]),
}

impl Plane {
    /// An orthonormal basis of the plane: the material-frame directions of the
    /// image's x and y axes. `None` for a zero or non-finite normal.
    ///
    /// # Shapes
    /// `[u_x, u_y]`, each a 3-vector: the columns of the 3x2 matrix `U`.
    pub fn basis(&self) -> Option<[[f64; 3]; 2]> {
        match *self {
            Plane::Xy => Some([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
            Plane::Xz => Some([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
            Plane::Yz => Some([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
            Plane::Normal(n) => {
                let len = dot(n, n).sqrt();
                if !len.is_finite() || len == 0.0 {
                    return None;
                }
                let n = n.map(|c| c / len);
                // Project the x axis, or the y axis when x is (nearly) the normal.
                let axis = if n[0].abs() < 0.999_999 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
                let along = dot(axis, n);
                let p = [axis[0] - along * n[0], axis[1] - along * n[1], axis[2] - along * n[2]];
                let plen = dot(p, p).sqrt();
                let u = p.map(|c| c / plen);
                let v = [n[1] * u[2] - n[2] * u[1], n[2] * u[0] - n[0] * u[2], n[0] * u[1] - n[1] * u[0]];
                Some([u, v])
            }
        }
    }
}

impl fmt::Display for Plane {
    /// `xy`, `xz`, `yz`, or the normal's components separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plane::Xy => f.write_str("xy"),
            Plane::Xz => f.write_str("xz"),
            Plane::Yz => f.write_str("yz"),
            Plane::Normal([a, b, c]) => write!(f, "{a} {b} {c}"),
        }
    }
}

impl Serialize for Plane {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Plane::Normal(n) => {
                let mut t = s.serialize_tuple(3)?;
                for c in n {
                    t.serialize_element(c)?;
                }
                t.end()
            }
            axis => s.serialize_str(&axis.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Plane {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct PlaneVisitor;
        impl<'de> Visitor<'de> for PlaneVisitor {
            type Value = Plane;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""xy", "xz", "yz" or a normal vector [a, b, c]"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Plane, E> {
                match v {
                    "xy" => Ok(Plane::Xy),
                    "xz" => Ok(Plane::Xz),
                    "yz" => Ok(Plane::Yz),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Plane, A::Error> {
                let mut n = [0.0; 3];
                for (i, c) in n.iter_mut().enumerate() {
                    *c = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                Ok(Plane::Normal(n))
            }
        }
        d.deserialize_any(PlaneVisitor)
    }
}

impl Morphology {
    /// Covariance of the 2-D Gaussian filter whose blur of 2-D white noise has
    /// the distribution of this morphology's section, in image pixels
    /// (x = columns, y = rows), the in-plane rotation applied.
    ///
    /// The 3-D field `F = W * g_S` (white noise `W`, Gaussian kernel of
    /// covariance `S`) is a stationary Gaussian field with covariance function
    /// `c(r) ∝ exp(-rᵀ (2S)⁻¹ r / 2)`. A Gaussian field is fixed in
    /// distribution by its mean and covariance function, and the section
    /// `f(u) = F(U u)` (U the orthonormal 3x2 [`Plane::basis`]) has mean 0 and
    /// covariance `c(U u) ∝ exp(-uᵀ (Uᵀ (2S)⁻¹ U) u / 2)`, a 2-D Gaussian of
    /// covariance `2 C2` with `C2 = (Uᵀ S⁻¹ U)⁻¹`. Blurring 2-D white noise
    /// with a Gaussian of covariance `C2` gives covariance `∝ exp(-uᵀ (2 C2)⁻¹ u / 2)`:
    /// the same function up to a constant factor, and a positive factor does
    /// not change the image after thresholding at a quantile. So the 2-D
    /// field is the section in distribution, exactly, with no volume made.
    /// (For an axis plane and no rotation `C2` is just the two in-plane sigmas squared.)
    ///
    /// `None` when a sigma is not positive and finite or the normal is zero.
    ///
    /// # Shapes
    /// `[[c_xx, c_xy], [c_xy, c_yy]]`, symmetric positive definite.
    pub fn in_plane_covariance(&self) -> Option<[[f64; 2]; 2]> {
        let sigmas = [self.sigma_x, self.sigma_y, self.sigma_z];
        if sigmas.iter().any(|s| !(s.is_finite() && *s > 0.0)) || !self.rotation.is_finite() {
            return None;
        }
        let [u, v] = self.plane.basis()?;
        let precision =
            |a: [f64; 3], b: [f64; 3]| (0..3).map(|i| a[i] * b[i] / (sigmas[i] * sigmas[i])).sum();
        let (p11, p12, p22): (f64, f64, f64) = (precision(u, u), precision(u, v), precision(v, v));
        let det = p11 * p22 - p12 * p12;
        let c = [[p22 / det, -p12 / det], [-p12 / det, p11 / det]];
        // Rotate the covariance: R C Rᵀ with R turning x toward y by `rotation`.
        let (s, co) = self.rotation.to_radians().sin_cos();
        let r = [[co, -s], [s, co]];
        let mut out = [[0.0; 2]; 2];
        for (i, row) in out.iter_mut().enumerate() {
            for (j, o) in row.iter_mut().enumerate() {
                *o = (0..2)
                    .flat_map(|k| (0..2).map(move |l| (k, l)))
                    .map(|(k, l)| r[i][k] * c[k][l] * r[j][l])
                    .sum();
            }
        }
        Some(out)
    }
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn default_size() -> usize {
    128
}
fn default_images_per_class() -> usize {
    50
}
fn default_seed() -> u64 {
    1
}
fn default_volume_fractions() -> Vec<f64> {
    vec![0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50]
}
fn default_morphologies() -> Vec<Morphology> {
    SynthConfig::default().morphologies
}

impl Default for SynthConfig {
    /// The embedded `configs/synthetic.toml`.
    fn default() -> Self {
        // The embedded file is checked by this crate's tests, so this cannot fail.
        SynthConfig::from_toml_str(DEFAULT_CONFIG_TOML, Path::new(DEFAULT_CONFIG_ORIGIN))
            .unwrap_or_else(|e| unreachable!("embedded configs/synthetic.toml is invalid: {e}"))
    }
}

/// One step of a field path: `morphologies[2].sigma_x` is `[Key, Index, Key]`.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn field_name(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The line where the value at `path` is written, if it is in the text.
fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut span = root.span();
    let mut table = Some(root.get_ref());
    let mut value: Option<&toml::Spanned<toml::de::DeValue>> = None;
    for seg in path {
        let next = match *seg {
            Seg::Key(k) => table?.get(k)?,
            Seg::Index(i) => value?.get_ref().as_array()?.get(i)?,
        };
        span = next.span();
        table = next.get_ref().as_table();
        value = Some(next);
    }
    Some(line_at(text, span.start))
}

/// Collects the first semantic error of a config, with its line in `text`.
struct Check<'a> {
    text: Option<&'a str>,
    origin: &'a Path,
}

impl Check<'_> {
    fn fail(&self, path: &[Seg], message: String) -> Error {
        Error::Invalid {
            path: self.origin.to_path_buf(),
            line: self.text.and_then(|t| line_of(t, path)),
            field: field_name(path),
            message,
        }
    }
}

impl SynthConfig {
    /// Parses and validates a config. `origin` names the text in messages
    /// (usually the file it came from).
    ///
    /// Syntax errors, unknown keys and wrong types give [`Error::Toml`] with
    /// the line; values that parse but are not allowed give [`Error::Invalid`]
    /// with the field path and line.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self> {
        let cfg: SynthConfig = toml::from_str(text).map_err(|e| Error::Toml {
            path: origin.to_path_buf(),
            line: e.span().map(|s| line_at(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        cfg.check(&Check { text: Some(text), origin })?;
        Ok(cfg)
    }

    /// Reads, parses and validates the config file at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// The config as TOML, which [`SynthConfig::from_toml_str`] reads back to an equal config.
    pub fn to_toml_string(&self) -> String {
        // Only numbers, strings, arrays and tables: serialising cannot fail.
        toml::to_string(self).unwrap_or_else(|e| unreachable!("SynthConfig is always valid TOML: {e}"))
    }

    /// Checks every rule a config built in code (not read from TOML) must follow.
    pub fn validate(&self) -> Result<()> {
        self.check(&Check { text: None, origin: Path::new("<config>") })
    }

    /// Total number of images: morphologies x volume fractions x images per class.
    pub fn image_count(&self) -> usize {
        self.morphologies.len() * self.volume_fractions.len() * self.images_per_class
    }

    /// One label per volume fraction, in config order: the fraction with the
    /// fewest decimals (at least 2, at most 6) that shows every class exactly,
    /// the same count for all, so labels sort as the numbers do (`"0.05"`, `"0.10"`, ...).
    pub fn class_labels(&self) -> Vec<String> {
        let decimals = (2..=MAX_LABEL_DECIMALS)
            .find(|&d| {
                self.volume_fractions
                    .iter()
                    .all(|f| format!("{f:.d$}").parse::<f64>().is_ok_and(|back| (back - f).abs() <= 1e-12))
            })
            .unwrap_or(MAX_LABEL_DECIMALS);
        self.volume_fractions.iter().map(|f| format!("{f:.decimals$}")).collect()
    }

    fn check(&self, c: &Check) -> Result<()> {
        use Seg::{Index, Key};
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.size) {
            return Err(c.fail(
                &[Key("size")],
                format!("must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {})", self.size),
            ));
        }
        if self.images_per_class == 0 {
            return Err(c.fail(&[Key("images_per_class")], "must be at least 1".into()));
        }
        if self.seed > i64::MAX as u64 {
            return Err(c.fail(&[Key("seed")], format!("must be at most {} (got {})", i64::MAX, self.seed)));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(c.fail(&[Key("jitter")], format!("must be in [0, 1] (got {})", self.jitter)));
        }
        if self.volume_fractions.is_empty() {
            return Err(c.fail(&[Key("volume_fractions")], "no volume fractions".into()));
        }
        for (i, f) in self.volume_fractions.iter().enumerate() {
            if !(*f > 0.0 && *f < 1.0) {
                return Err(c.fail(
                    &[Key("volume_fractions"), Index(i)],
                    format!("must be strictly between 0 and 1 (got {f})"),
                ));
            }
        }
        let labels = self.class_labels();
        for (i, label) in labels.iter().enumerate() {
            if let Some(j) = labels[..i].iter().position(|l| l == label) {
                return Err(c.fail(
                    &[Key("volume_fractions"), Index(i)],
                    format!("duplicate volume fraction {label} (also volume_fractions[{j}])"),
                ));
            }
        }
        if self.morphologies.is_empty() {
            return Err(c.fail(&[Key("morphologies")], "no morphologies".into()));
        }
        for (i, m) in self.morphologies.iter().enumerate() {
            let at = |field| [Key("morphologies"), Index(i), Key(field)];
            let name_ok = !m.name.is_empty()
                && m.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
            if !name_ok {
                return Err(c.fail(
                    &at("name"),
                    format!("{:?}: use letters, digits, '_' and '-' only (it names files)", m.name),
                ));
            }
            if let Some(j) = self.morphologies[..i].iter().position(|o| o.name == m.name) {
                return Err(
                    c.fail(&at("name"), format!("duplicate name {:?} (also morphologies[{j}])", m.name))
                );
            }
            for (field, s) in [("sigma_x", m.sigma_x), ("sigma_y", m.sigma_y), ("sigma_z", m.sigma_z)] {
                if !(s.is_finite() && s > 0.0) {
                    return Err(c.fail(&at(field), format!("must be > 0 pixels (got {s})")));
                }
            }
            if m.plane.basis().is_none() {
                return Err(c.fail(&at("plane"), "the normal vector must be finite and non-zero".into()));
            }
            if !m.rotation.is_finite() {
                return Err(c.fail(&at("rotation"), format!("must be a finite angle (got {})", m.rotation)));
            }
        }
        if self
            .morphologies
            .len()
            .checked_mul(self.volume_fractions.len())
            .and_then(|n| n.checked_mul(self.images_per_class))
            .is_none()
        {
            return Err(c.fail(&[Key("images_per_class")], "too many images".into()));
        }
        Ok(())
    }
}
