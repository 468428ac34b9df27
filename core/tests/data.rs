//! Data loading: manifests, class folders, image formats, the split.

use std::path::Path;

use furcate_core::config::Fit;
use furcate_core::data::{image as load, split, Dataset, Duplicates};
use proptest::prelude::*;

pub(crate) fn write_gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)])).save(path).unwrap();
}

#[test]
fn manifest_reads_columns_and_empty_cells() {
    let dir = tempfile::tempdir().unwrap();
    write_gray_png(&dir.path().join("a.png"), 8, 8, |_, _| 0);
    write_gray_png(&dir.path().join("b.png"), 8, 8, |_, _| 255);
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "file,morphology,vf\na.png,fine,0.1\nb.png,,0.2\n").unwrap();
    let set = Dataset::from_manifest(&m, "file").unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.labels("morphology").unwrap(), vec![Some("fine"), None]);
    assert_eq!(set.labels("vf").unwrap(), vec![Some("0.1"), Some("0.2")]);
    assert_eq!(set.files[1], dir.path().join("b.png"));
    assert_eq!(set.origins[1], "line 3");
    let err = set.labels("nope").unwrap_err().to_string();
    assert!(err.contains("no column `nope`") && err.contains("morphology"), "{err}");
}

#[test]
fn manifest_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "image,label\n").unwrap();
    let err = Dataset::from_manifest(&m, "file").unwrap_err().to_string();
    assert!(err.contains("m.csv") && err.contains("line 1") && err.contains("`file`"), "{err}");
    std::fs::write(&m, "file,label\n").unwrap();
    let err = Dataset::from_manifest(&m, "file").unwrap_err().to_string();
    assert!(err.contains("lists no images"), "{err}");
    std::fs::write(&m, "file,label\na.png,x\n,y\n").unwrap();
    let err = Dataset::from_manifest(&m, "file").unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
    std::fs::write(&m, "file,label\na.png,x,extra\n").unwrap();
    let err = Dataset::from_manifest(&m, "file").unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    let err = Dataset::from_manifest(&dir.path().join("missing.csv"), "file").unwrap_err().to_string();
    assert!(err.contains("missing.csv"), "{err}");
}

/// A manifest listing the same file twice (also under another spelling) is
/// an error naming both lines of each repeat; `duplicates = "drop"` keeps
/// each file's first row, in order, with its labels.
#[test]
fn repeated_files_are_an_error_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    for (name, v) in [("a", 0), ("b", 128), ("c", 255)] {
        write_gray_png(&dir.path().join(format!("images/{name}.png")), 8, 8, |_, _| v);
    }
    let m = dir.path().join("m.csv");
    std::fs::write(
        &m,
        "file,label\nimages/a.png,x\nimages/b.png,y\nimages/a.png,z\n./images/b.png,w\nimages/c.png,v\n",
    )
    .unwrap();
    let err = Dataset::from_manifest(&m, "file").unwrap_err();
    assert!(matches!(err, furcate_core::Error::Data { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("m.csv") && msg.contains("2 row(s) repeat an image file"), "{msg}");
    assert!(msg.contains("line 4 (images/a.png) lists the file of line 2 (images/a.png)"), "{msg}");
    assert!(msg.contains("line 5 (./images/b.png) lists the file of line 3 (images/b.png)"), "{msg}");
    assert!(msg.contains("duplicates = \"drop\""), "{msg}");

    // Through `[data]`: the default is the error, `drop` keeps the first rows.
    let strict: DataConfig = toml::from_str("manifest = \"m.csv\"").unwrap();
    assert_eq!(strict.duplicates, Duplicates::Error);
    let err = Dataset::load(&strict, dir.path()).unwrap_err().to_string();
    assert!(err.contains("line 4") && err.contains("line 2"), "{err}");
    let lenient: DataConfig = toml::from_str("manifest = \"m.csv\"\nduplicates = \"drop\"").unwrap();
    let set = Dataset::load(&lenient, dir.path()).unwrap();
    assert_eq!(set.names, vec!["images/a.png", "images/b.png", "images/c.png"]);
    assert_eq!(set.labels("label").unwrap(), vec![Some("x"), Some("y"), Some("v")]);
    assert_eq!(set.origins, vec!["line 2", "line 3", "line 6"]);
    // Every row as listed, for `furcate check`.
    let listed = Dataset::load_listed(&strict, dir.path()).unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed.repeated_files(), vec![(0, 2), (1, 3)]);
    // An unknown value names the key.
    let bad = toml::from_str::<DataConfig>("manifest = \"m.csv\"\nduplicates = \"keep\"").unwrap_err();
    assert!(bad.to_string().contains("keep") && bad.to_string().contains("drop"), "{bad}");
    // Distinct files are no repeats, and the resolved config leaves out the default.
    std::fs::write(&m, "file,label\nimages/a.png,x\nimages/b.png,y\n").unwrap();
    assert_eq!(Dataset::load(&strict, dir.path()).unwrap().len(), 2);
    assert!(!toml::to_string(&strict).unwrap().contains("duplicates"));
    assert!(toml::to_string(&lenient).unwrap().contains("duplicates = \"drop\""));
}

#[test]
fn class_folders_give_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["zeta", "alpha"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..2 {
            write_gray_png(&dir.path().join(class).join(format!("{i}.png")), 4, 4, |_, _| 9);
        }
    }
    std::fs::write(dir.path().join("alpha").join("notes.txt"), "not an image").unwrap();
    let set = Dataset::from_folders(dir.path(), "class").unwrap();
    assert_eq!(set.len(), 4);
    assert_eq!(set.labels("class").unwrap(), vec![Some("alpha"), Some("alpha"), Some("zeta"), Some("zeta")]);
    assert_eq!(set.names[0], "alpha/0.png");
}

#[test]
fn image_formats_decode_to_unit_range() {
    let dir = tempfile::tempdir().unwrap();
    // 8-bit PNG, half black, half white.
    let png = dir.path().join("a.png");
    write_gray_png(&png, 16, 16, |x, _| if x < 8 { 0 } else { 255 });
    let p = load::load(&png, 16, Fit::Resize).unwrap();
    assert_eq!((p.channels, p.size, p.data.len()), (1, 16, 256));
    assert_eq!(p.data[0], 0.0);
    assert_eq!(p.data[15], 1.0);
    // 16-bit TIFF keeps its range: 1000 / 65535.
    let tif = dir.path().join("b.tif");
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(8, 8, image::Luma([1000]))
        .save(&tif)
        .unwrap();
    let p = load::load(&tif, 8, Fit::Resize).unwrap();
    assert!((p.data[0] - 1000.0 / 65535.0).abs() < 1e-6, "{}", p.data[0]);
    // RGB BMP gives 3 planes.
    let bmp = dir.path().join("c.bmp");
    image::RgbImage::from_pixel(8, 8, image::Rgb([255, 0, 0])).save(&bmp).unwrap();
    let p = load::load(&bmp, 4, Fit::Resize).unwrap();
    assert_eq!(p.channels, 3);
    assert_eq!((p.data[0], p.data[16], p.data[32]), (1.0, 0.0, 0.0));
    // JPEG decodes (lossy: only the size is checked).
    let jpg = dir.path().join("d.jpg");
    image::RgbImage::from_pixel(20, 10, image::Rgb([128, 128, 128])).save(&jpg).unwrap();
    assert_eq!(load::load(&jpg, 8, Fit::CenterCrop).unwrap().data.len(), 3 * 64);
    // A batch of mixed gray and RGB becomes RGB.
    let t = load::load_batch(&[png, bmp], 8, Fit::Resize).unwrap();
    assert_eq!(t.size(), vec![2, 3, 8, 8]);
}

#[test]
fn center_crop_keeps_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("wide.png");
    // 30 x 10: left and right thirds white, middle black.
    write_gray_png(&png, 30, 10, |x, _| if (10..20).contains(&x) { 0 } else { 255 });
    let crop = load::load(&png, 10, Fit::CenterCrop).unwrap();
    assert!(crop.data.iter().all(|&v| v == 0.0));
    let resized = load::load(&png, 10, Fit::Resize).unwrap();
    assert!(resized.data.iter().any(|&v| v > 0.5));
}

#[test]
fn corrupt_image_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not the rest of a png").unwrap();
    let err = load::load(&bad, 8, Fit::Resize).unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");
    let err = load::load(&dir.path().join("gone.png"), 8, Fit::Resize).unwrap_err().to_string();
    assert!(err.contains("gone.png"), "{err}");
}

prop_compose! {
    fn strata()(classes in 1usize..5, per in 1usize..30, seed in any::<u64>()) -> (Vec<String>, u64) {
        let v = (0..classes * per).map(|i| format!("c{}", i % classes)).collect();
        (v, seed)
    }
}

proptest! {
    #[test]
    fn split_is_a_stratified_partition((labels, seed) in strata(), test in 0.05f64..0.95, val in 0.0f64..0.5) {
        let s = split::stratified(&labels, test, val, seed);
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        prop_assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        // Every class keeps a training sample, and each class's test share is its rounded fraction.
        let classes: std::collections::BTreeSet<&String> = labels.iter().collect();
        for c in classes {
            let n = labels.iter().filter(|l| *l == c).count();
            let n_test = s.test.iter().filter(|&&i| &labels[i] == c).count();
            prop_assert!(s.train.iter().any(|&i| &labels[i] == c));
            prop_assert_eq!(n_test, ((test * n as f64).round() as usize).min(n - 1));
        }
        prop_assert_eq!(split::stratified(&labels, test, val, seed), s);
    }
}

// ---- real micrographs: intensity, crop, tiles, pixel size ----

use furcate_core::config::{DataConfig, LoadedConfig};
use furcate_core::data::intensity::{bit_depth_for, Intensity};
use furcate_core::data::prepare::Preprocess;
use furcate_core::data::tiles::{Crop, Rect, TileConfig};
use furcate_core::run::aggregate::{aggregate_class, aggregate_value, mean_std};
use furcate_core::Prediction;

/// A smooth two-phase-ish grey pattern, 0..=255.
pub(crate) fn pattern(x: u32, y: u32) -> u8 {
    let v = ((x as f64 / 5.0).sin() * (y as f64 / 7.0).cos() * 0.5 + 0.5) * 255.0;
    v.round() as u8
}

fn write_u16_tiff(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u16) {
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

pub(crate) fn data_config(extra: &str) -> DataConfig {
    toml::from_str(&format!("manifest = \"m.csv\"\n{extra}")).unwrap()
}

/// A manifest of `files` with a `porosity` column and the given extra columns.
pub(crate) fn manifest(dir: &Path, rows: &[&str], header: &str) -> Dataset {
    let m = dir.join("m.csv");
    std::fs::write(&m, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    Dataset::from_manifest(&m, "file").unwrap()
}

fn pixels(cfg: &DataConfig, set: &Dataset, size: usize) -> Vec<Vec<f32>> {
    let pre = Preprocess { data: cfg, size };
    let plan = pre.plan(set).unwrap();
    let rows: Vec<usize> = (0..plan.names.len()).collect();
    pre.load_rows(set, &plan, &rows).unwrap().into_iter().map(|p| p.data).collect()
}

#[test]
fn eight_bit_images_read_as_before_under_auto_with_unchanged_cache_names() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a.png");
    write_gray_png(&png, 40, 30, pattern);
    let set = manifest(dir.path(), &["a.png,0.5"], "file,porosity");
    let cfg = data_config("");
    let new = pixels(&cfg, &set, 16);
    assert_eq!(new[0], load::load(&png, 16, Fit::Resize).unwrap().data, "8-bit pixels must not change");
    let plan = Preprocess { data: &cfg, size: 16 }.plan(&set).unwrap();
    let sha = furcate_core::fsutil::sha256_bytes(&std::fs::read(&png).unwrap());
    assert_eq!(plan.names, vec![sha], "the cache row of an 8-bit image is its file hash, as before");
    assert_eq!(plan.summary(cfg.intensity).bit_depths.get("8-bit"), Some(&1));
    // The resolved config of a run without the new keys is unchanged.
    let text = toml::to_string(&cfg).unwrap();
    for key in ["intensity", "percentiles", "crop", "tile", "pixel_size", "min_size"] {
        assert!(!text.contains(key), "{key} serialised at its default: {text}");
    }
}

#[test]
fn twelve_bit_tiff_reads_like_the_eight_bit_image() {
    let dir = tempfile::tempdir().unwrap();
    write_gray_png(&dir.path().join("a.png"), 64, 64, pattern);
    // The same image as 12-bit data in a 16-bit TIFF (max 4095).
    let twelve = |x, y| (pattern(x, y) as f64 * 4095.0 / 255.0).round() as u16;
    write_u16_tiff(&dir.path().join("a.tif"), 64, 64, twelve);
    let set = manifest(dir.path(), &["a.png,0.5", "a.tif,0.5"], "file,porosity");
    let auto = pixels(&data_config(""), &set, 32);
    let diff = auto[0].iter().zip(&auto[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1.0 / 255.0, "12-bit vs 8-bit differ by {diff}");
    let full = pixels(&data_config("intensity = \"full_range\""), &set, 32);
    assert!(full[1].iter().all(|&v| v <= 4095.0 / 65535.0 + 1e-6), "full_range divides by 65535");
    let plan = Preprocess { data: &data_config(""), size: 32 }.plan(&set).unwrap();
    let depths = plan.summary(Intensity::Auto).bit_depths;
    assert_eq!((depths.get("8-bit"), depths.get("12-bit")), (Some(&1), Some(&1)), "{depths:?}");
    assert!(plan.names[1].contains("#intbit_depth"), "{}", plan.names[1]);
    // Features too: two_point on both images, through the run's feature stage.
    let text =
        "[data]\nmanifest = \"m.csv\"\nfeature_cache = \"features\"\n[extractor]\ntype = \"two_point\"\n\
                size = 32\nwindow = 4\n[[heads]]\ntype = \"regression\"\nname = \"porosity\"\n";
    let cfg = LoadedConfig::from_str(text, &dir.path().join("run.toml")).unwrap();
    let extractor = cfg.config.extractor.build(&cfg.build_context()).unwrap();
    let f =
        furcate_core::run::features_for(&cfg, extractor.as_ref(), &set, &mut furcate_core::progress::Silent)
            .unwrap()
            .features;
    let d = (f.get(0) - f.get(1)).abs().max().double_value(&[]);
    assert!(d < 0.02, "two_point features differ by {d}");
    assert!(bit_depth_for(4095.0) == 12 && bit_depth_for(4096.0) == 14);
}

#[test]
fn tiff_tags_and_percentiles_set_the_range() {
    let dir = tempfile::tempdir().unwrap();
    // SMaxSampleValue = 1000: 1000 reads as white.
    let path = dir.path().join("tagged.tif");
    {
        use tiff::encoder::{colortype, TiffEncoder};
        let data: Vec<u16> = (0..64u32 * 64).map(|i| (i % 1001) as u16).collect();
        let mut enc = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
        let mut img = enc.new_image::<colortype::Gray16>(64, 64).unwrap();
        img.encoder().write_tag(tiff::tags::Tag::SMaxSampleValue, 1000u16).unwrap();
        img.write_data(&data).unwrap();
    }
    let set = manifest(dir.path(), &["tagged.tif,0.5"], "file,porosity");
    let p = pixels(&data_config(""), &set, 64);
    assert!(
        (p[0][1000] - 1.0).abs() < 1e-6 && (p[0][500] - 0.5).abs() < 1e-6,
        "{} {}",
        p[0][1000],
        p[0][500]
    );
    // percentile: the 0.5 and 99.5 % of 0..=1000 stretch to 0 and 1, clipped.
    let p = pixels(&data_config("intensity = \"percentile\""), &set, 64);
    assert!(p[0].iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(p[0][0], 0.0);
    assert_eq!(p[0][1000], 1.0);
    // [low, high]: fixed raw values.
    let p = pixels(&data_config("intensity = [0, 500]"), &set, 64);
    assert_eq!((p[0][250], p[0][800]), (0.5, 1.0));
}

#[test]
fn crop_removes_the_data_bar_first() {
    let dir = tempfile::tempdir().unwrap();
    // 32 x 40: the bottom 8 rows are a white data bar over a black image.
    write_gray_png(&dir.path().join("bar.png"), 32, 40, |_, y| if y >= 32 { 255 } else { 0 });
    let set = manifest(dir.path(), &["bar.png,0"], "file,porosity");
    let p = pixels(&data_config("crop = { bottom = 8 }"), &set, 32);
    assert!(p[0].iter().all(|&v| v == 0.0), "the data bar survived the crop");
    let err = Preprocess { data: &data_config("crop = { top = 20, bottom = 20 }"), size: 32 }
        .plan(&set)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bar.png") && err.contains("32 x 40"), "{err}");
}

#[test]
fn tile_grid_is_centred_and_drops_partial_tiles() {
    let t = TileConfig { size: 100, stride: None };
    // 250 x 100: two whole tiles, 50 px left over split 25 / 25.
    assert_eq!(
        t.grid(250, 100).unwrap(),
        vec![Rect { x: 25, y: 0, width: 100, height: 100 }, Rect { x: 125, y: 0, width: 100, height: 100 }]
    );
    // Overlapping: stride 50 over 250 -> x = 0, 50, 100, 150.
    let t = TileConfig { size: 100, stride: Some(50) };
    let xs: Vec<u32> = t.grid(250, 100).unwrap().iter().map(|r| r.x).collect();
    assert_eq!(xs, [0, 50, 100, 150]);
    assert!(t.grid(99, 300).unwrap_err().contains("99 x 300"));
    assert_eq!(
        Crop { bottom: 10, ..Crop::default() }.apply(50, 40).unwrap(),
        Rect { x: 0, y: 0, width: 50, height: 30 }
    );
}

#[test]
fn split_by_image_never_by_tile() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for i in 0..10 {
        write_gray_png(&dir.path().join(format!("{i}.png")), 96, 64, |x, y| pattern(x + i, y));
        rows.push(format!("{i}.png,{}", if i % 2 == 0 { "a" } else { "b" }));
    }
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let set = manifest(dir.path(), &rows, "file,class");
    let cfg = data_config("tile = { size = 32, stride = 16 }");
    let plan = Preprocess { data: &cfg, size: 32 }.plan(&set).unwrap();
    assert_eq!(plan.names.len(), 10 * 5 * 3, "5 x 3 overlapping tiles per image");
    let strata: Vec<String> = set.labels("class").unwrap().iter().map(|c| c.unwrap().to_string()).collect();
    let parts = split::stratified(&strata, 0.3, 0.2, 7);
    let (rows_set, row_strata, row_parts) = plan.expand(&set, strata, &parts);
    assert_eq!((rows_set.len(), row_strata.len()), (150, 150));
    let test_images: std::collections::BTreeSet<usize> = parts.test.iter().copied().collect();
    for &r in row_parts.train.iter().chain(&row_parts.val) {
        assert!(
            !test_images.contains(&plan.image[r]),
            "a tile of test image {} is trained on",
            plan.image[r]
        );
    }
    assert_eq!(row_parts.test.len(), parts.test.len() * 15, "every tile of a test image is tested");
    for &r in &row_parts.test {
        assert_eq!(rows_set.names[r], set.names[plan.image[r]]);
        assert_eq!(rows_set.labels("class").unwrap()[r], set.labels("class").unwrap()[plan.image[r]]);
    }
    // Every tile has its own cache row, named with its geometry.
    let names: std::collections::BTreeSet<&String> = plan.names.iter().collect();
    assert_eq!(names.len(), 150);
    assert!(plan.names[1].ends_with("#tile16,0,32"), "{}", plan.names[1]);
}

#[test]
fn pixel_size_resamples_and_bad_values_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write_gray_png(&dir.path().join("fine.png"), 128, 128, pattern);
    write_gray_png(&dir.path().join("coarse.png"), 64, 64, pattern);
    let set = manifest(dir.path(), &["fine.png,0.25", "coarse.png,0.5"], "file,pixel_size");
    // At 0.5 um/px both images are 64 x 64: 4 tiles of 32 each.
    let cfg = data_config("pixel_size = 0.5\ntile = { size = 32 }");
    let plan = Preprocess { data: &cfg, size: 32 }.plan(&set).unwrap();
    assert_eq!(plan.groups().iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);
    assert_eq!(plan.infos[0].scale, 0.5);
    for (bad, what) in [("-1", "positive"), ("", "empty"), ("x", "positive")] {
        let set = manifest(dir.path(), &["fine.png,0.25", &format!("coarse.png,{bad}")], "file,pixel_size");
        let err = Preprocess { data: &cfg, size: 32 }.plan(&set).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("coarse.png") && err.contains(what), "{err}");
    }
    let set = manifest(dir.path(), &["fine.png,0.25"], "file,other");
    let err = Preprocess { data: &cfg, size: 32 }.plan(&set).unwrap_err().to_string();
    assert!(err.contains("pixel_size"), "{err}");
}

#[test]
fn too_small_images_are_refused_unless_min_size_allows() {
    let dir = tempfile::tempdir().unwrap();
    write_gray_png(&dir.path().join("tiny.png"), 8, 8, pattern);
    let set = manifest(dir.path(), &["tiny.png,0"], "file,porosity");
    let err = Preprocess { data: &data_config(""), size: 128 }.plan(&set).unwrap_err().to_string();
    assert!(err.contains("tiny.png") && err.contains("8 x 8") && err.contains("min_size"), "{err}");
    assert!(Preprocess { data: &data_config("min_size = 8"), size: 128 }.plan(&set).is_ok());
    // 16-bit PNG reads like 16-bit TIFF.
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(32, 32, |x, _| image::Luma([x as u16 * 100]))
        .save(dir.path().join("deep.png"))
        .unwrap();
    let set = manifest(dir.path(), &["deep.png,0"], "file,porosity");
    let plan = Preprocess { data: &data_config(""), size: 32 }.plan(&set).unwrap();
    assert_eq!(plan.infos[0].bit_depth, Some(12));
    assert!((pixels(&data_config(""), &set, 32)[0][31] - 3100.0 / 4095.0).abs() < 1e-6);
}

#[test]
fn multi_page_tiff_reads_the_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages.tif");
    {
        use tiff::encoder::{colortype, TiffEncoder};
        let mut enc = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
        enc.write_image::<colortype::Gray8>(32, 32, &[0u8; 32 * 32]).unwrap();
        enc.write_image::<colortype::Gray8>(32, 32, &[255u8; 32 * 32]).unwrap();
    }
    let set = manifest(dir.path(), &["pages.tif,0"], "file,porosity");
    let plan = Preprocess { data: &data_config(""), size: 32 }.plan(&set).unwrap();
    assert_eq!(plan.infos[0].tags.unwrap().pages, 2);
    assert!(pixels(&data_config(""), &set, 32)[0].iter().all(|&v| v == 0.0));
}

#[test]
fn tiles_aggregate_by_mean_value_and_mean_probability() {
    // Values 0.2, 0.4, 0.9: mean 0.5, population std sqrt(((.3)² + (.1)² + (.4)²) / 3).
    let tiles: Vec<Prediction> =
        [0.2, 0.4, 0.9].iter().map(|&v| Prediction::Value { value: v, std: None }).collect();
    let (p, spread) = aggregate_value(tiles.iter());
    let Prediction::Value { value, std: None } = p else { panic!("{p:?}") };
    assert!((value - 0.5).abs() < 1e-12);
    let hand = ((0.09 + 0.01 + 0.16) / 3.0f64).sqrt();
    assert_eq!(
        format!("{spread:?}"),
        format!("{:?}", furcate_core::run::aggregate::Spread::TileStd(mean_std(&[0.2, 0.4, 0.9]).1))
    );
    assert!((mean_std(&[0.2, 0.4, 0.9]).1 - hand).abs() < 1e-12);
    // Classes: tile probabilities (a, b) = (0.9, 0.1), (0.3, 0.7), (0.4, 0.6):
    // mean (1.6 / 3, 1.4 / 3) -> a, although two of three tiles say b (a
    // majority vote would say b); agreement 1 / 3.
    let classes = vec!["a".to_string(), "b".to_string()];
    let probs = vec![vec![0.9, 0.1], vec![0.3, 0.7], vec![0.4, 0.6]];
    let decoded: Vec<Prediction> = probs
        .iter()
        .map(|p| {
            let (label, probability) = if p[0] > p[1] { ("a", p[0]) } else { ("b", p[1]) };
            Prediction::Class { label: label.into(), probability }
        })
        .collect();
    let (p, spread) = aggregate_class(&classes, &probs, decoded.iter());
    let Prediction::Class { label, probability } = p else { panic!("{p:?}") };
    assert_eq!(label, "a");
    assert!((probability - 1.6 / 3.0).abs() < 1e-12, "{probability}");
    assert_eq!(spread, furcate_core::run::aggregate::Spread::Agreement(1.0 / 3.0));
}

#[test]
fn intensity_and_weight_decay_values_are_told_apart_with_errors_at_their_line() {
    use furcate_core::config::{DataConfig, TrainingConfig, WeightDecay};
    let data =
        |value: &str| toml::from_str::<DataConfig>(&format!("manifest = \"m.csv\"\nintensity = {value}"));
    assert_eq!(data("[0, 500]").unwrap().intensity, Intensity::Fixed { low: 0.0, high: 500.0 });
    assert_eq!(data("\"bit_depth\"").unwrap().intensity, Intensity::BitDepth);
    for (value, says) in [
        ("\"gamma\"", "intensity = \"gamma\": expected \"auto\""),
        ("3", "intensity = 3: expected"),
        ("[5, 1]", "expected [low, high] with low < high"),
        ("true", "expected \"auto\", \"full_range\""),
    ] {
        let e = data(value).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains(says), "{value}: {e}");
    }
    let decay =
        |value: &str| toml::from_str::<TrainingConfig>(&format!("epochs = 2\nweight_decay = {value}"));
    assert_eq!(decay("1").unwrap().weight_decay, WeightDecay::Fixed(1.0));
    assert_eq!(decay("[1e-3, 0.5]").unwrap().weight_decay, WeightDecay::Grid(vec![1e-3, 0.5]));
    assert_eq!(decay("\"auto\"").unwrap().weight_decay.values(), WeightDecay::AUTO_GRID);
    for (value, says) in [("\"big\"", "weight_decay = \"big\": expected a number"), ("true", "\"auto\"")] {
        let e = decay(value).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains(says), "{value}: {e}");
    }
}

/// With fewer training images than strata (35 of 3500 images in 70 strata),
/// the split takes one image from 35 strata chosen so that every label of
/// every stratifying column is covered evenly: 5 per morphology and 3 or 4
/// per fraction, the test part as asked, no validation part.
#[test]
fn a_few_label_split_covers_every_label_evenly() {
    let sep = split::STRATUM_SEPARATOR;
    let strata: Vec<String> = (0..3500).map(|i| format!("m{}{sep}f{}", i / 500, (i / 50) % 10)).collect();
    for seed in 0..3 {
        let s = split::stratified(&strata, 0.99, 0.1, seed);
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (35, 0, 3465));
        let count = |part: usize| {
            let mut c = std::collections::BTreeMap::new();
            for &i in &s.train {
                *c.entry(strata[i].split(sep).nth(part).unwrap().to_string()).or_insert(0) += 1;
            }
            c
        };
        assert!(count(0).values().all(|&n| n == 5), "{:?}", count(0));
        assert_eq!(count(1).len(), 10);
        assert!(count(1).values().all(|&n| (3..=4).contains(&n)), "{:?}", count(1));
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..3500).collect::<Vec<_>>());
    }
    // Enough training images for every stratum: the usual per-stratum split.
    let s = split::stratified(&strata, 0.9, 0.0, 0);
    assert_eq!(s.train.len(), 350);
}
