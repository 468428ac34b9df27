//! Data loading: manifests, class folders, image formats, the split.

use std::path::Path;

use furcate_core::config::Fit;
use furcate_core::data::{image as load, split, Dataset};
use proptest::prelude::*;

fn write_gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
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
