//! Writing a data set: files, manifest and config round trip, refusal and
//! replacement of an existing folder, nothing written for a bad config.

use std::fs;
use std::path::Path;

use furcate_synth::{
    generate, image_seed, write_dataset, Error, SynthConfig, CONFIG_FILE, MANIFEST_COLUMNS, MANIFEST_FILE,
};

fn small() -> SynthConfig {
    let mut cfg = SynthConfig {
        size: 32,
        images_per_class: 2,
        volume_fractions: vec![0.05, 0.25, 0.5],
        seed: 77,
        ..SynthConfig::default()
    };
    cfg.morphologies.truncate(3);
    cfg
}

fn decode_png(path: &Path) -> (u32, u32, png::ColorType, png::BitDepth, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, info.bit_depth, buf)
}

/// Names in `dir` other than `keep`: leftovers of temporary folders.
fn leftovers(dir: &Path, keep: &str) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != keep)
        .collect()
}

#[test]
fn manifest_pngs_and_config_round_trip() {
    let cfg = small();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    let summary = write_dataset(&cfg, &out, false).unwrap();
    assert_eq!(summary.images, cfg.image_count());
    assert_eq!(leftovers(tmp.path(), "set"), Vec::<String>::new());

    let images = generate(&cfg).unwrap();
    let manifest = fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(lines.next().unwrap(), MANIFEST_COLUMNS.join(","));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), images.len());
    let col = |name: &str| MANIFEST_COLUMNS.iter().position(|c| *c == name).unwrap();
    let mut png_bytes = 0;
    for (row, img) in rows.iter().zip(&images) {
        assert_eq!(row.len(), MANIFEST_COLUMNS.len());
        let path = out.join(row[col("file")]);
        png_bytes += fs::metadata(&path).unwrap().len();
        let (w, h, color, depth, pixels) = decode_png(&path);
        assert_eq!((w, h), (32, 32));
        assert_eq!((color, depth), (png::ColorType::Grayscale, png::BitDepth::Eight));
        assert_eq!(pixels, img.pixels, "{}", row[col("file")]);
        assert_eq!(row[col("morphology")], img.morphology);
        assert_eq!(row[col("volume_fraction_class")], img.volume_fraction_class);
        let measured: f64 = row[col("volume_fraction")].parse().unwrap();
        let white = pixels.iter().filter(|&&p| p == 255).count() as f64 / 1024.0;
        assert!((measured - white).abs() < 5e-7, "{measured} vs {white}");
        assert_eq!(row[col("volume_fraction")].split('.').nth(1).unwrap().len(), 6);
        let m = &cfg.morphologies[img.morphology_index];
        assert_eq!(row[col("sigma_x")].parse::<f64>().unwrap(), m.sigma_x);
        assert_eq!(row[col("sigma_y")].parse::<f64>().unwrap(), m.sigma_y);
        assert_eq!(row[col("sigma_z")].parse::<f64>().unwrap(), m.sigma_z);
        assert_eq!(row[col("plane")], m.plane.to_string());
        assert_eq!(row[col("seed")].parse::<u64>().unwrap(), image_seed(cfg.seed, img.index));
    }
    assert_eq!(png_bytes, summary.png_bytes);
    // File names are unique.
    let mut files: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), rows.len());

    let back = SynthConfig::from_file(&out.join(CONFIG_FILE)).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn an_existing_output_is_refused_unless_forced() {
    let cfg = small();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "mine").unwrap();

    let err = write_dataset(&cfg, &out, false).unwrap_err();
    assert!(matches!(err, Error::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    assert_eq!(leftovers(tmp.path(), "set"), Vec::<String>::new());

    write_dataset(&cfg, &out, true).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join(MANIFEST_FILE).exists());
    assert_eq!(leftovers(tmp.path(), "set"), Vec::<String>::new());
}

#[test]
fn a_bad_config_writes_nothing() {
    let mut cfg = small();
    cfg.morphologies[1].sigma_y = -1.0;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    let err = write_dataset(&cfg, &out, true).unwrap_err();
    assert!(err.to_string().contains("morphologies[1].sigma_y"), "{err}");
    assert!(!out.exists());
    assert_eq!(leftovers(tmp.path(), "set"), Vec::<String>::new());
}
