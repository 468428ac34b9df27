//! Making the images of a data set in memory.

use rayon::prelude::*;

use crate::field::{Plans, Scratch, Transfer};
use crate::rng::{image_seed, CounterRng};
use crate::{Error, Result, SynthConfig};

/// One generated image and its labels.
///
/// # Shapes
/// `pixels`: `size * size` bytes, row-major (row `y`, column `x` at
/// `y * size + x`), each 0 (black phase) or 255 (white phase).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthImage {
    /// Position in the data set (morphology-major, then volume fraction, then repeat).
    pub index: usize,
    /// Side of the square image, in pixels.
    pub size: usize,
    /// The pixels, 0 or 255; see `# Shapes`.
    pub pixels: Vec<u8>,
    /// Name of the morphology class.
    pub morphology: String,
    /// Index of the morphology in the config.
    pub morphology_index: usize,
    /// Label of the volume-fraction class (see [`SynthConfig::class_labels`]), e.g. `"0.05"`.
    pub volume_fraction_class: String,
    /// Index of the volume fraction in the config.
    pub class_index: usize,
    /// The white fraction aimed at: the class value, moved by the jitter if any.
    pub target_fraction: f64,
    /// The white fraction of `pixels`: `round(target * size²) / size²`.
    pub volume_fraction: f64,
    /// The image's own seed (see [`crate::image_seed`]).
    pub seed: u64,
}

/// Makes the images of one config: FFT plans and the morphologies' transfer
/// functions are computed once in [`Generator::new`], then any image can be
/// made alone ([`Generator::image`]) or many in parallel ([`Generator::images`]).
/// Image `i` is the same whatever thread makes it and whatever else is made.
pub struct Generator {
    cfg: SynthConfig,
    labels: Vec<String>,
    half_widths: Vec<f64>,
    plans: Plans,
    transfers: Vec<Transfer>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Generator {
    /// Validates `cfg` and prepares the plans and transfer functions.
    pub fn new(cfg: &SynthConfig) -> Result<Self> {
        cfg.validate()?;
        let plans = Plans::new(cfg.size);
        let transfers = cfg
            .morphologies
            .iter()
            .map(|m| {
                // validate() checked what in_plane_covariance needs.
                let cov = m.in_plane_covariance().unwrap_or([[1.0, 0.0], [0.0, 1.0]]);
                plans.transfer(cov)
            })
            .collect();
        Ok(Generator {
            labels: cfg.class_labels(),
            half_widths: half_widths(&cfg.volume_fractions),
            cfg: cfg.clone(),
            plans,
            transfers,
        })
    }

    /// The config the images are made from.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Number of images in the data set.
    pub fn len(&self) -> usize {
        self.cfg.image_count()
    }

    /// Whether the data set has no images (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Image `index` (0-based; images are ordered by morphology, then volume
    /// fraction, then repeat). `index` must be below [`Generator::len`].
    pub fn image(&self, index: usize) -> Result<SynthImage> {
        self.image_with(index, &mut self.plans.scratch())
    }

    /// Images `range`, made in parallel on rayon's current pool, in order.
    pub fn images(&self, range: std::ops::Range<usize>) -> Result<Vec<SynthImage>> {
        range.into_par_iter().map_init(|| self.plans.scratch(), |s, i| self.image_with(i, s)).collect()
    }

    pub(crate) fn scratch(&self) -> Scratch {
        self.plans.scratch()
    }

    pub(crate) fn image_with(&self, index: usize, scratch: &mut Scratch) -> Result<SynthImage> {
        let cfg = &self.cfg;
        if index >= self.len() {
            return Err(Error::Index { index, len: self.len() });
        }
        let (per, classes) = (cfg.images_per_class, cfg.volume_fractions.len());
        let class_index = (index / per) % classes;
        let morphology_index = index / (per * classes);
        let seed = image_seed(cfg.seed, index);
        let mut rng = CounterRng::new(seed);
        let class_value = cfg.volume_fractions[class_index];
        let target = if cfg.jitter > 0.0 {
            class_value + cfg.jitter * self.half_widths[class_index] * rng.symmetric_unit()
        } else {
            class_value
        };
        let n2 = cfg.size * cfg.size;
        let white = (target * n2 as f64).round().clamp(0.0, n2 as f64) as usize;
        let mut pixels = vec![0u8; n2];
        self.plans.render(&self.transfers[morphology_index], &mut rng, scratch, white, &mut pixels);
        Ok(SynthImage {
            index,
            size: cfg.size,
            pixels,
            morphology: cfg.morphologies[morphology_index].name.clone(),
            morphology_index,
            volume_fraction_class: self.labels[class_index].clone(),
            class_index,
            target_fraction: target,
            volume_fraction: white as f64 / n2 as f64,
            seed,
        })
    }
}

/// Half the distance from each fraction to its nearest other one, and never
/// more than its distance to 0 or 1, so jittered targets stay in [0, 1].
fn half_widths(fractions: &[f64]) -> Vec<f64> {
    fractions
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let nearest = fractions
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &g)| (g - f).abs() / 2.0)
                .fold(f64::INFINITY, f64::min);
            nearest.min(f).min(1.0 - f)
        })
        .collect()
}

/// All images of `cfg`, in memory, made in parallel on rayon's current pool.
///
/// The result is the same for any number of threads.
pub fn generate(cfg: &SynthConfig) -> Result<Vec<SynthImage>> {
    let generator = Generator::new(cfg)?;
    generator.images(0..generator.len())
}
