//! `furcate check CONFIG`: everything that would stop or spoil a training
//! run, found without training.
//!
//! It reads the configuration (every problem at once, with its line), the
//! data set (every image decoded: a table of sizes, bit depths and channels),
//! the labels each head reads (class counts per part of the split the run
//! would make, value ranges, missing cells, labels a head cannot use, named
//! by line), duplicates (the same file, or the same pixels, twice: both
//! lines named), the extractor and its weights (SHA-256; loading checks every
//! tensor the network needs), and estimates the feature cache's size and the
//! extraction time. [`CheckReport::ok`] says whether `furcate train` would
//! start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use tch::Device;

use crate::config::LoadedConfig;
use crate::data::{image, split, Dataset};
use crate::head::cell;
use crate::run::assemble::{build_model, encode};
use crate::run::parts::{check_columns, strata};
use crate::{fsutil, Result};

/// What `furcate check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The configuration file.
    pub config: PathBuf,
    /// Whether training would start (no errors).
    pub ok: bool,
    /// Problems that stop training, each naming its file and line.
    pub errors: Vec<String>,
    /// Problems that make the scores mean less.
    pub warnings: Vec<String>,
    /// Images listed.
    pub images: usize,
    /// Decoded images grouped by kind.
    pub image_kinds: Vec<ImageKind>,
    /// Per head, its labels.
    pub heads: Vec<HeadLabels>,
    /// Files or pixels that appear twice.
    pub duplicates: Vec<Duplicate>,
    /// The extractor and its weights, when it could be built.
    pub extractor: Option<ExtractorCheck>,
}

/// Images of one size, bit depth and channel count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageKind {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per channel.
    pub bit_depth: u16,
    /// 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
    pub channels: u8,
    /// How many images are of this kind.
    pub count: usize,
}

/// The labels of one head.
#[derive(Debug, Clone, Serialize)]
pub struct HeadLabels {
    /// The head.
    pub head: String,
    /// The column it reads.
    pub column: String,
    /// Rows with an empty cell.
    pub missing: usize,
    /// Discrete heads: each class's rows in the training, validation and test parts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassCount>,
    /// Value heads: the smallest and largest numeric label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(f64, f64)>,
}

/// One class's rows per part of the split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    /// The class.
    pub class: String,
    /// In the training part.
    pub train: usize,
    /// In the validation part.
    pub val: usize,
    /// In the test part (with folds: every image is scored out of fold; this is 0).
    pub test: usize,
}

/// Two manifest rows with the same file or the same pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    /// `same file` or `same pixels`.
    pub kind: String,
    /// The first row (`line 3 (images/a.png)`).
    pub first: String,
    /// The second row.
    pub second: String,
}

/// The extractor, built with its weights.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractorCheck {
    /// SHA-256 of the weights file (`None`: no weights, randomly initialised).
    pub weights_sha256: Option<String>,
    /// Features per image.
    pub feature_dim: i64,
    /// Estimated size of the feature cache for these images, in bytes (f32).
    pub cache_bytes: u64,
    /// Estimated seconds to extract every image (timed on a few of them).
    pub extraction_seconds: f64,
}

/// Checks the run configuration `path` and its data without training.
/// Errors of the check itself (none: every problem found is in the report)
/// are not returned; the report says what it could not check.
pub fn check(path: &Path) -> CheckReport {
    let mut r = CheckReport { config: path.to_path_buf(), ..Default::default() };
    let cfg = match LoadedConfig::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            r.errors.push(e.to_string());
            return r;
        }
    };
    if let Err(e) = check_loaded(&cfg, &mut r) {
        r.errors.push(e.to_string());
    }
    r.ok = r.errors.is_empty();
    r
}

fn check_loaded(cfg: &LoadedConfig, r: &mut CheckReport) -> Result<()> {
    let c = &cfg.config;
    crate::runtime::apply_config_threads(&c.runtime);
    let listed = Dataset::load_listed(&c.data, &cfg.dir())?;
    let repeats = listed.repeated_files();
    for &(j, i) in &repeats {
        r.duplicates.push(Duplicate {
            kind: "same file".into(),
            first: row(&listed, j),
            second: row(&listed, i),
        });
    }
    // Training refuses repeated files (`duplicates = "error"`) or drops them;
    // either way the rest is checked on the rows it would train on.
    let data = match listed.clone().with_duplicates(c.data.duplicates) {
        Ok(data) => {
            for d in &r.duplicates {
                r.warnings.push(format!("{}: {} and {}; the second dropped", d.kind, d.first, d.second));
            }
            data
        }
        Err(e) => {
            r.errors.push(e.to_string());
            let dropped: std::collections::HashSet<usize> = repeats.iter().map(|&(_, i)| i).collect();
            listed.subset(&(0..listed.len()).filter(|i| !dropped.contains(i)).collect::<Vec<_>>())
        }
    };
    r.images = data.len();
    if let Err(e) = check_columns(cfg, &data) {
        r.errors.push(e.to_string());
        return Ok(());
    }
    images(&data, r);
    let strata = strata(c, &data)?;
    let t = &c.training;
    let parts = if t.folds.is_some() {
        let all: Vec<usize> = (0..data.len()).collect();
        let (train, val, _) = crate::run::parts::validation_split(t, &strata, &all);
        split::Split { train, val, test: Vec::new() }
    } else {
        let rest = data.len() - split::stratified(&strata, t.test_fraction, 0.0, t.seed).test.len();
        split::stratified(&strata, t.test_fraction, t.validation_fraction_for(rest).0, t.seed)
    };
    if let Err(e) = cfg.check_folds(data.len()) {
        r.errors.push(e.to_string());
    }
    r.warnings.extend(crate::run::warnings::split_warnings(c, &data, &parts)?);
    labels(cfg, &data, &parts, r)?;
    match c.extractor.build(&cfg.build_context()) {
        Ok(extractor) => {
            let spec = extractor.input_spec();
            let n = data.len().min(8);
            let start = Instant::now();
            let sample = image::load_batch(&data.files[..n], spec.size as usize, c.data.fit)
                .and_then(|images| extractor.extract(&images));
            let seconds = start.elapsed().as_secs_f64() * data.len() as f64 / n.max(1) as f64;
            if let Err(e) = sample {
                r.errors.push(e.to_string());
            }
            let dim = extractor.output_dim();
            r.extractor = Some(ExtractorCheck {
                weights_sha256: extractor.weights_sha256(),
                feature_dim: dim,
                cache_bytes: (data.len() as u64) * (dim.max(0) as u64) * 4,
                extraction_seconds: seconds,
            });
        }
        Err(e) => r.errors.push(e.to_string()),
    }
    Ok(())
}

/// `line 3 (images/a.png)`.
fn row(data: &Dataset, i: usize) -> String {
    format!("{} ({})", data.origins[i], data.names[i])
}

/// Decodes every image: kinds, unreadable files, the same pixels under two names.
fn images(data: &Dataset, r: &mut CheckReport) {
    let decoded: Vec<std::result::Result<(ImageKind, String), String>> = data
        .files
        .par_iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let img = ::image::ImageReader::new(std::io::Cursor::new(&bytes))
                .with_guessed_format()
                .map_err(|e| format!("{}: cannot read image: {e}", f.display()))?
                .decode()
                .map_err(|e| format!("{}: not a readable image: {e}", f.display()))?;
            let color = img.color();
            let channels = color.channel_count();
            let kind = ImageKind {
                width: img.width(),
                height: img.height(),
                bit_depth: color.bits_per_pixel() / u16::from(channels.max(1)),
                channels,
                count: 1,
            };
            let pixels = fsutil::sha256_bytes(img.as_bytes());
            Ok((kind, format!("{}x{}:{}:{pixels}", img.width(), img.height(), channels)))
        })
        .collect();
    let mut kinds: BTreeMap<ImageKind, usize> = BTreeMap::new();
    let mut seen_pixels: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in decoded.iter().enumerate() {
        match d {
            Ok((kind, pixels)) => {
                *kinds.entry(ImageKind { count: 0, ..kind.clone() }).or_default() += 1;
                if let Some(&j) = seen_pixels.get(pixels.as_str()) {
                    if std::fs::canonicalize(&data.files[i]).ok()
                        != std::fs::canonicalize(&data.files[j]).ok()
                    {
                        r.duplicates.push(Duplicate {
                            kind: "same pixels".into(),
                            first: row(data, j),
                            second: row(data, i),
                        });
                    }
                } else {
                    seen_pixels.insert(pixels, i);
                }
            }
            Err(e) => r.errors.push(format!("{} ({}): {e}", data.origins[i], data.names[i])),
        }
    }
    r.image_kinds = kinds.into_iter().map(|(k, count)| ImageKind { count, ..k }).collect();
    for d in r.duplicates.iter().filter(|d| d.kind == "same pixels") {
        r.warnings.push(format!("{}: {} and {}", d.kind, d.first, d.second));
    }
}

/// Each head's labels per part, and every label a head cannot use (as training would find it).
fn labels(cfg: &LoadedConfig, data: &Dataset, parts: &split::Split, r: &mut CheckReport) -> Result<()> {
    let c = &cfg.config;
    let mut part_of = vec![0u8; data.len()];
    for &i in &parts.val {
        part_of[i] = 1;
    }
    for &i in &parts.test {
        part_of[i] = 2;
    }
    for h in &c.heads {
        let labels = data.labels(h.column())?;
        let missing = labels.iter().filter(|l| cell(**l).is_none()).count();
        let mut classes: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        let mut range: Option<(f64, f64)> = None;
        for (i, l) in labels.iter().enumerate() {
            let Some(l) = cell(*l) else { continue };
            if h.stratify() {
                classes.entry(l).or_default()[part_of[i] as usize] += 1;
            } else if let Ok(v) = l.parse::<f64>() {
                range = Some(range.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
            }
        }
        r.heads.push(HeadLabels {
            head: h.name().to_string(),
            column: h.column().to_string(),
            missing,
            classes: classes
                .into_iter()
                .map(|(class, [train, val, test])| ClassCount { class: class.to_string(), train, val, test })
                .collect(),
            range,
        });
    }
    // The heads themselves judge the labels, exactly as training does.
    let train_set = data.subset(&parts.train);
    let mut states = Vec::new();
    for h in &c.heads {
        match h.fit(&train_set.labels(h.column())?) {
            Ok(s) => states.push(s),
            Err(e) => {
                r.errors.push(train_set.label_error(h.column(), e).to_string());
                return Ok(());
            }
        }
    }
    if c.extractor.trainable_stages() > 0 {
        return Ok(()); // the model needs the built tail; training will encode the labels
    }
    let (_, probe, _) = build_model(c, &states, 1, Device::Cpu)?;
    if let Err(e) = encode(&probe, c, data, Device::Cpu) {
        r.errors.push(e.to_string());
    }
    Ok(())
}

impl CheckReport {
    /// The plain-text report `furcate check` prints.
    pub fn format(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!("config: {}\nimages: {}\n", self.config.display(), self.images);
        if !self.image_kinds.is_empty() {
            let _ = writeln!(
                s,
                "{:>8} {:>8} {:>10} {:>9} {:>8}",
                "width", "height", "bit depth", "channels", "images"
            );
            for k in &self.image_kinds {
                let _ = writeln!(
                    s,
                    "{:>8} {:>8} {:>10} {:>9} {:>8}",
                    k.width, k.height, k.bit_depth, k.channels, k.count
                );
            }
        }
        for h in &self.heads {
            let _ = write!(s, "head {} (column {}): {} missing", h.head, h.column, h.missing);
            if let Some((lo, hi)) = h.range {
                let _ = write!(s, ", values {lo} .. {hi}");
            }
            s.push('\n');
            if !h.classes.is_empty() {
                let _ = writeln!(s, "  {:<24} {:>6} {:>6} {:>6}", "class", "train", "val", "test");
                for c in &h.classes {
                    let _ = writeln!(s, "  {:<24} {:>6} {:>6} {:>6}", c.class, c.train, c.val, c.test);
                }
            }
        }
        if let Some(e) = &self.extractor {
            let _ = writeln!(
                s,
                "weights sha256: {}\nfeatures: {} per image; cache about {:.1} MiB; extraction about {:.1} s",
                e.weights_sha256.as_deref().unwrap_or("none (randomly initialised)"),
                e.feature_dim,
                e.cache_bytes as f64 / (1024.0 * 1024.0),
                e.extraction_seconds
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        for e in &self.errors {
            let _ = writeln!(s, "error: {e}");
        }
        let _ = writeln!(
            s,
            "{}",
            if self.ok { "ok: training would start" } else { "not ok: training would not start" }
        );
        s
    }
}
