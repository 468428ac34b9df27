//! Synthetic binary microstructures: furcate's default data set, made on the spot.
//!
//! The thesis trains on 3500 two-phase images: Gaussian-filtered white noise
//! thresholded into black and white (Hyman & Winter 2014), in 7 morphology
//! classes (the filter's width differs along the 3 axes of the material) x 10
//! volume-fraction classes (5 %, 10 %, ..., 50 % white) x 50 images. This
//! crate makes that set, or any variant described by a [`SynthConfig`], in
//! memory ([`generate`], [`Generator`]) or as a folder of PNGs with a
//! manifest ([`write_dataset`]). It needs no libtorch.
//!
//! How an image is made:
//! 1. Each image is a planar section of a 3-D field; it is drawn directly in
//!    2-D from the in-plane restriction of the 3-D covariance, which is exact
//!    in distribution ([`Morphology::in_plane_covariance`]).
//! 2. White noise is blurred in Fourier space, on the periodic lattice, so
//!    there is no edge bias.
//! 3. The field is thresholded at its empirical quantile: exactly
//!    `round(f * size²)` pixels are white, so the measured fraction is the
//!    target `f` to within half a pixel.
//!
//! Each image draws its noise from its own counter-based random stream keyed
//! by (seed, image index): same seed, same bytes, whatever the thread count
//! or the order the images are made in. (Across machines the bytes can
//! differ in rare pixels: `rustfft` picks its SIMD code at run time, and a
//! different last bit can move a value across the threshold.)
//!
//! ```
//! let mut cfg = furcate_synth::SynthConfig::default();
//! cfg.size = 32;
//! cfg.images_per_class = 1;
//! let images = furcate_synth::generate(&cfg)?;
//! assert_eq!(images.len(), 7 * 10);
//! assert_eq!(images[0].pixels.len(), 32 * 32);
//! # Ok::<(), furcate_synth::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod error;
mod field;
mod generate;
mod rng;
mod write;

pub use config::{
    Morphology, Plane, SynthConfig, DEFAULT_CONFIG_ORIGIN, DEFAULT_CONFIG_TOML, MAX_SIZE, MIN_SIZE,
};
pub use error::{Error, Result};
pub use generate::{generate, Generator, SynthImage};
pub use rng::image_seed;
pub use write::{
    write_dataset, write_dataset_with_progress, DatasetSummary, CONFIG_FILE, IMAGES_DIR, MANIFEST_COLUMNS,
    MANIFEST_FILE,
};
