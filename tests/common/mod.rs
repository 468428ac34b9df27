//! Fixtures shared by the integration tests that drive the `furcate` binary:
//! running it, small data sets, and the config tables they train with.
#![allow(dead_code)] // each test module uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `furcate` binary, run without `LD_LIBRARY_PATH` (it must find
/// libtorch through its rpath).
pub fn furcate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_furcate"));
    c.env_remove("LD_LIBRARY_PATH");
    c
}

/// Runs `furcate --quiet ARGS...` to completion.
pub fn run(args: &[&str]) -> Output {
    furcate().arg("--quiet").args(args).output().expect("the binary runs")
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small synthetic data set in `dir/data`: `morphologies` x 2 volume
/// fractions x `per_class` images of 32 px; returns its manifest.
pub fn dataset(dir: &Path, morphologies: usize, per_class: usize) -> PathBuf {
    let mut cfg = furcate_synth::SynthConfig {
        size: 32,
        images_per_class: per_class,
        volume_fractions: vec![0.1, 0.4],
        ..Default::default()
    };
    cfg.morphologies.truncate(morphologies);
    let out = dir.join("data");
    furcate_synth::write_dataset(&cfg, &out, false).unwrap();
    out.join(furcate_synth::MANIFEST_FILE)
}

/// 3 morphologies x 2 volume fractions x 6 images of 32 px (the set most
/// end-to-end tests train on); returns its manifest.
pub fn dataset_3x6(dir: &Path) -> PathBuf {
    dataset(dir, 3, 6)
}

/// The `[extractor]` table of the packaged EfficientNet-Lite0 weights at 32 px.
pub const LITE0_32: &str =
    "[extractor]\ntype = \"efficientnet_lite0\"\nweights = \"cache:efficientnet_lite0.safetensors\"\nsize = 32\n";

/// One `[[heads]]` table: a head of type `kind` on the column `name`.
pub fn head(kind: &str, name: &str) -> String {
    format!("[[heads]]\ntype = \"{kind}\"\nname = \"{name}\"\n")
}

/// A classification head on `class` and a regression head on `value`.
pub fn class_and_value_heads(class: &str, value: &str) -> String {
    format!("{}\n{}", head("classification", class), head("regression", value))
}

/// A run config: the `[data]` table of `manifest` (features cached in
/// `features`), the `extractor` table, the `heads` tables and the `[training]`
/// table's lines `training`, a blank line between tables.
pub fn config_text(manifest: &Path, extractor: &str, heads: &str, training: &str) -> String {
    format!(
        "[data]\nmanifest = \"{}\"\nfeature_cache = \"features\"\n\n{extractor}\n{heads}\n[training]\n{training}",
        manifest.display()
    )
}

/// Writes `text` to `dir/name` and returns that path.
pub fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `furcate predict RUN IMAGES --out OUT` on the images of the data set of
/// `manifest` (its `images` folder); returns the CSV it wrote.
pub fn predict_dataset(run_dir: &Path, manifest: &Path, out: &Path) -> String {
    let images = manifest.parent().unwrap().join("images");
    let o = run(&["predict", s(run_dir), s(&images), "--out", s(out)]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::read_to_string(out).unwrap()
}

/// Rows of the microscope's data bar [`large_micrographs`] burns in.
pub const DATA_BAR: u32 = 32;

/// `n` large two-phase micrographs (`side` px square, volume fractions
/// spread over 0.15..0.5) saved under `dir` as 12-bit data in 16-bit TIFFs,
/// each with a white data bar of [`DATA_BAR`] rows (with black "text") below
/// the microstructure. Returns `(file name, true porosity)` per image.
pub fn large_micrographs(dir: &Path, n: usize, side: usize, seed: u64) -> Vec<(String, f64)> {
    let mut cfg = furcate_synth::SynthConfig {
        size: side,
        images_per_class: n.div_ceil(4),
        volume_fractions: vec![0.15, 0.25, 0.35, 0.45],
        jitter: 1.0,
        seed,
        ..Default::default()
    };
    cfg.morphologies.truncate(1);
    let images = furcate_synth::generate(&cfg).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    images
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, img)| {
            let (w, h) = (side as u32, side as u32 + DATA_BAR);
            let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
                let v = if y < side as u32 {
                    img.pixels[y as usize * side + x as usize] > 127
                } else {
                    // White bar with black glyph-like blocks.
                    !((x / 6) % 3 == 0 && (y - side as u32) % 10 < 6)
                };
                image::Luma([if v { 4095 } else { 0 }])
            });
            let name = format!("micrograph_{seed}_{i}.tif");
            buf.save(dir.join(&name)).unwrap();
            (name, img.volume_fraction)
        })
        .collect()
}

/// `furcate eval RUN --json` on the run's own test part reproduces the
/// scores in `metrics` (its `metrics.json`) for the heads `morphology`
/// (first, error rate) and `volume_fraction` (second, MAE).
pub fn assert_eval_reproduces(run_dir: &Path, metrics: &serde_json::Value) {
    let o = run(&["eval", s(run_dir), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(eval["heads"][0]["score"]["error_rate"], metrics["heads"]["morphology"]["error_rate"]);
    assert_eq!(
        eval["heads"][1]["score"]["metrics"]["mae"],
        metrics["heads"]["volume_fraction"]["metrics"]["mae"]
    );
}

/// A binary micrograph of `height` x `width` pixels from a heterogeneous
/// field: fine Gaussian-filtered noise (filter width 3 px) plus a coarse one
/// (150 px) that makes the local fraction wander across the frame, as in
/// real sections, thresholded so that the white fraction is `fraction`.
/// Returns the pixels (row-major, `true` = white) and the measured fraction.
pub fn heterogeneous_field(height: i64, width: i64, fraction: f64, seed: i64) -> (Vec<bool>, f64) {
    use tch::{Device, Kind, Tensor};
    let opts = (Kind::Double, Device::Cpu);
    let blur = |noise: &Tensor, sigma: f64| {
        let fy = Tensor::fft_fftfreq(height, 1.0, opts).unsqueeze(1);
        let fx = Tensor::fft_fftfreq(width, 1.0, opts).unsqueeze(0);
        let k = ((fy.square() + fx.square()) * (-2.0 * (std::f64::consts::PI * sigma).powi(2))).exp();
        let f = (noise.fft_fft2(None::<&[i64]>, [-2, -1], "backward") * k)
            .fft_ifft2(None::<&[i64]>, [-2, -1], "backward")
            .real();
        (&f - f.mean(Kind::Double)) / f.std(true)
    };
    tch::manual_seed(seed);
    let fine = Tensor::randn([height, width], opts);
    let coarse = Tensor::randn([height, width], opts);
    let field = blur(&fine, 3.0) + blur(&coarse, 150.0) * 0.8;
    let flat = field.flatten(0, -1);
    let k = ((1.0 - fraction) * (height * width) as f64) as i64;
    let threshold = flat.kthvalue(k.max(1), 0, false).0.double_value(&[]);
    let white: Vec<bool> = Vec::<f64>::try_from(&flat).unwrap().iter().map(|&v| v > threshold).collect();
    let measured = white.iter().filter(|&&w| w).count() as f64 / white.len() as f64;
    (white, measured)
}

/// `n` frames of `height` x `width` from [`heterogeneous_field`] (fractions
/// spread evenly over 0.15..0.44), saved under `dir` as 8-bit PNGs with a
/// data bar of [`DATA_BAR`] rows below; `(file name, true fraction)` each.
pub fn heterogeneous_frames(dir: &Path, n: usize, height: u32, width: u32, seed: i64) -> Vec<(String, f64)> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let target = 0.15 + 0.29 * i as f64 / (n.max(2) - 1) as f64;
            let (white, fraction) =
                heterogeneous_field(height as i64, width as i64, target, seed * 1000 + i as i64);
            let buf = image::GrayImage::from_fn(width, height + DATA_BAR, |x, y| {
                let v = if y < height {
                    white[(y * width + x) as usize]
                } else {
                    !((x / 6) % 3 == 0 && (y - height) % 10 < 6)
                };
                image::Luma([if v { 255 } else { 0 }])
            });
            let name = format!("frame_{seed}_{i}.png");
            buf.save(dir.join(&name)).unwrap();
            (name, fraction)
        })
        .collect()
}

#[path = "../../core/tests/common/skip.rs"]
pub mod skip_rule;
