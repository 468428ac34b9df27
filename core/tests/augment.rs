//! `[data] augment`: the transformations' pixels, views as extra rows of
//! their image (cache names, the split, the pipeline), the views averaged
//! (`tta`), leave-group-out, and the config's errors.

use std::collections::BTreeSet;
use std::path::Path;

use furcate_core::config::LoadedConfig;
use furcate_core::data::augment::{closure_warning, missing_compositions, Transform};
use furcate_core::data::prepare::Preprocess;
use furcate_core::data::split;
use furcate_core::run::aggregate::view_groups;
use furcate_core::train::ridge::RidgePath;
use tch::{Kind, Tensor};

use crate::data::{data_config, manifest, pattern, write_gray_png};

/// A 3 x 3 image, two planes: 0..9 row by row, and 10..19.
fn three_by_three() -> Vec<f32> {
    (0..9).chain(10..19).map(|v| v as f32).collect()
}

#[test]
fn each_transform_moves_the_pixels_as_named() {
    // 0 1 2
    // 3 4 5
    // 6 7 8
    let expected: [(Transform, [u8; 9]); 7] = [
        (Transform::Hflip, [2, 1, 0, 5, 4, 3, 8, 7, 6]),
        (Transform::Vflip, [6, 7, 8, 3, 4, 5, 0, 1, 2]),
        // Counter-clockwise, as numpy.rot90: the right column becomes the top row.
        (Transform::Rot90, [2, 5, 8, 1, 4, 7, 0, 3, 6]),
        (Transform::Rot180, [8, 7, 6, 5, 4, 3, 2, 1, 0]),
        (Transform::Rot270, [6, 3, 0, 7, 4, 1, 8, 5, 2]),
        (Transform::Transpose, [0, 3, 6, 1, 4, 7, 2, 5, 8]),
        (Transform::Antitranspose, [8, 5, 2, 7, 4, 1, 6, 3, 0]),
    ];
    let px = three_by_three();
    for (t, want) in expected {
        let out = t.apply(&px, 3);
        let want: Vec<f32> =
            want.iter().map(|&v| v as f32).chain(want.iter().map(|&v| v as f32 + 10.0)).collect();
        assert_eq!(out, want, "{}", t.name());
        assert_eq!(
            t.swaps_axes(),
            matches!(
                t,
                Transform::Rot90 | Transform::Rot270 | Transform::Transpose | Transform::Antitranspose
            )
        );
    }
    // Composition agrees with applying one after the other, for every pair.
    for a in Transform::ALL {
        for b in Transform::ALL {
            let twice = a.apply(&b.apply(&px, 3), 3);
            match a.after(b) {
                Some(c) => assert_eq!(c.apply(&px, 3), twice, "{} after {}", a.name(), b.name()),
                None => assert_eq!(twice, px, "{} after {} is the identity", a.name(), b.name()),
            }
        }
    }
    assert_eq!(missing_compositions(&[Transform::Hflip, Transform::Vflip]), vec![Transform::Rot180]);
    assert!(missing_compositions(&[Transform::Hflip, Transform::Vflip, Transform::Rot180]).is_empty());
    assert_eq!(missing_compositions(&[Transform::Rot90]), vec![Transform::Rot180, Transform::Rot270]);
    let warning = closure_warning(&[Transform::Hflip, Transform::Vflip]).unwrap();
    assert!(warning.contains("[\"rot180\"]"), "{warning}");
    assert_eq!(closure_warning(&Transform::ALL), None);
}

/// `n` asymmetric 32 x 32 images in `dir`, classes a / b alternating.
fn images(dir: &Path, n: u32) -> furcate_core::data::Dataset {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            write_gray_png(&dir.join(format!("{i}.png")), 32, 32, |x, y| pattern(3 * x + i, y + 2 * i));
            format!("{i}.png,{}", if i % 2 == 0 { "a" } else { "b" })
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    manifest(dir, &rows, "file,class")
}

#[test]
fn views_are_rows_of_their_image_cached_apart_and_never_split_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let set = images(dir.path(), 10);
    let cfg = data_config("augment = [\"hflip\", \"rot180\"]");
    let pre = Preprocess { data: &cfg, size: 32 };
    // Views for the images that ask for them only.
    let augmented: Vec<bool> = (0..10).map(|i| i != 3).collect();
    let plan = pre.plan_augmented(&set, &augmented).unwrap();
    assert_eq!(plan.names.len(), 9 * 3 + 1);
    assert!(plan.augmented());
    let names: BTreeSet<&String> = plan.names.iter().collect();
    assert_eq!(names.len(), plan.names.len(), "every view has a cache row of its own");
    let plain = &plan.names[0];
    assert!(!plain.contains('#'), "the plain row keeps its name: {plain}");
    assert_eq!(plan.names[1], format!("{plain}#hflip"));
    assert_eq!(plan.names[2], format!("{plain}#rot180"));
    // Each plain row, then its views.
    let base = plan.base();
    assert_eq!(&base[..5], &[0, 0, 0, 3, 3]);
    let (plain_plan, plain_rows) = plan.plain();
    assert_eq!(plain_plan.names.len(), 10);
    assert_eq!(plan.views().len(), 10);
    assert!(plain_rows.iter().all(|&r| plan.transform[r].is_none() && base[r] == r));
    assert_eq!(plan.summary(Default::default()).views, Some(18));
    // The pixels: the view is its plain row transformed.
    let rows = pre.load_rows(&set, &plan, &[0, 1, 2]).unwrap();
    for y in 0..32 {
        for x in 0..32 {
            let at = |r: usize, x: usize, y: usize| rows[r].data[y * 32 + x];
            assert_eq!(at(1, x, y), at(0, 31 - x, y), "hflip at ({x}, {y})");
            assert_eq!(at(2, x, y), at(0, 31 - x, 31 - y), "rot180 at ({x}, {y})");
        }
    }
    // The split is by image: every row of an image goes to its image's part.
    let strata: Vec<String> = set.labels("class").unwrap().iter().map(|c| c.unwrap().to_string()).collect();
    let parts = split::stratified(&strata, 0.3, 0.2, 5);
    let (rows_set, _, row_parts) = plan.expand(&set, strata, &parts);
    let part_of = |rows: &[usize]| rows.iter().map(|&r| plan.image[r]).collect::<BTreeSet<_>>();
    assert_eq!(part_of(&row_parts.train), parts.train.iter().copied().collect());
    assert_eq!(part_of(&row_parts.val), parts.val.iter().copied().collect());
    assert_eq!(part_of(&row_parts.test), parts.test.iter().copied().collect());
    let all: usize = [&row_parts.train, &row_parts.val, &row_parts.test].iter().map(|p| p.len()).sum();
    assert_eq!(all, plan.names.len(), "every row is in exactly one part");
    for r in 0..plan.names.len() {
        assert_eq!(rows_set.labels("class").unwrap()[r], set.labels("class").unwrap()[plan.image[r]]);
    }
}

#[test]
fn tiles_have_views_each_named_after_its_tile_and_transform() {
    let dir = tempfile::tempdir().unwrap();
    let set = images(dir.path(), 2);
    let cfg = data_config("tile = { size = 16 }\naugment = [\"vflip\"]");
    let pre = Preprocess { data: &cfg, size: 16 };
    let plan = pre.plan_augmented(&set, &[true, true]).unwrap();
    assert_eq!(plan.names.len(), 2 * 4 * 2, "4 tiles x (plain + vflip) per image");
    assert!(plan.names[1].ends_with("#tile0,0,16;vflip"), "{}", plan.names[1]);
    assert_eq!(plan.summary(Default::default()).tiles, Some(8), "tiles count plain rows");
    let rows = pre.load_rows(&set, &plan, &[2, 3]).unwrap();
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(rows[1].data[y * 16 + x], rows[0].data[(15 - y) * 16 + x]);
        }
    }
}

#[test]
fn views_are_extracted_and_cached_like_their_images() {
    use furcate_core::progress::Silent;
    use furcate_core::run::features_augmented;
    let dir = tempfile::tempdir().unwrap();
    let set = images(dir.path(), 2);
    // The hflipped image 0 as a file of its own.
    let flipped = image::open(dir.path().join("0.png")).unwrap().fliph();
    flipped.save(dir.path().join("flipped.png")).unwrap();
    std::fs::write(dir.path().join("f.csv"), "file,class\nflipped.png,a\n").unwrap();
    let text = "[data]\nmanifest = \"m.csv\"\nfeature_cache = \"features\"\naugment = [\"hflip\"]\n\
                [extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n\
                [[heads]]\ntype = \"classification\"\nname = \"class\"\n";
    let cfg = LoadedConfig::from_str(text, &dir.path().join("run.toml")).unwrap();
    let extractor = cfg.config.extractor.build(&cfg.build_context()).unwrap();
    let f = features_augmented(&cfg, extractor.as_ref(), &set, &[true, false], &mut Silent).unwrap();
    assert_eq!(f.features.size()[0], 3);
    assert_eq!(f.stats.extracted, 3);
    let again = features_augmented(&cfg, extractor.as_ref(), &set, &[true, true], &mut Silent).unwrap();
    assert_eq!((again.stats.hits, again.stats.extracted), (3, 1), "only the new view is extracted");
    let other = furcate_core::data::Dataset::from_manifest(&dir.path().join("f.csv"), "file").unwrap();
    let plain = furcate_core::run::features_for(&cfg, extractor.as_ref(), &other, &mut Silent).unwrap();
    let diff = (f.features.get(1) - plain.features.get(0)).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "the hflip view's features are the flipped image's: {diff}");
}

#[test]
fn scored_rows_are_plain_rows_or_their_views_together() {
    // Rows 0..6: plain 0 (views 1, 2), plain 3 (views 4, 5); scored among 5, 3, 4, 0.
    let base = [0, 0, 0, 3, 3, 3];
    let rows = [5, 3, 4, 0];
    assert_eq!(view_groups(&rows, &base, false), (vec![3, 0], vec![vec![1], vec![3]]));
    assert_eq!(view_groups(&rows, &base, true), (vec![3, 0], vec![vec![0, 1, 2], vec![3]]));
}

/// 12 rows of 3 made-up features, 2 targets.
fn ridge_problem() -> (Tensor, Tensor) {
    let x: Vec<f64> = (0..36).map(|i| ((i * 7 % 11) as f64 * 0.37).sin() + (i as f64 * 0.11)).collect();
    let y: Vec<f64> = (0..24).map(|i| ((i * 5 % 7) as f64 * 0.51).cos()).collect();
    (Tensor::from_slice(&x).reshape([12, 3]), Tensor::from_slice(&y).reshape([12, 2]))
}

#[test]
fn leave_group_out_equals_refitting_without_the_group() {
    let (x, y) = ridge_problem();
    let path = RidgePath::new(&x, &y).unwrap();
    let groups: Vec<Vec<usize>> = vec![vec![0, 5, 9], vec![1, 2], vec![3, 4, 6, 7], vec![8], vec![10, 11]];
    for alpha in [0.0, 0.3, 5.0] {
        let fast = path.loo_group_residuals(alpha, &groups).unwrap();
        for g in &groups {
            let rest: Vec<i64> = (0..12).filter(|r| !g.contains(&(*r as usize))).collect();
            let held: Vec<i64> = g.iter().map(|&r| r as i64).collect();
            let pick = |t: &Tensor, rows: &[i64]| t.index_select(0, &Tensor::from_slice(rows));
            let (w, b) = RidgePath::new(&pick(&x, &rest), &pick(&y, &rest)).unwrap().solve(alpha);
            let refit =
                pick(&y, &held) - (pick(&x, &held).to_kind(Kind::Double).matmul(&w.transpose(0, 1)) + b);
            let err = (pick(&fast, &held) - refit).abs().max().double_value(&[]);
            assert!(err < 1e-8, "alpha {alpha}, group {g:?}: {err}");
        }
    }
    // Groups of one are leave-one-out.
    let singles: Vec<Vec<usize>> = (0..12).map(|r| vec![r]).collect();
    let err = (path.loo_group_residuals(0.3, &singles).unwrap() - path.loo_residuals(0.3)).abs().max();
    assert!(err.double_value(&[]) < 1e-10);
}

/// A run config with `[data]` lines `data` and `[training]` lines `training`.
fn config_error(data: &str, training: &str) -> String {
    let text = format!(
        "[data]\nmanifest = \"m.csv\"\n{data}\n\n[extractor]\ntype = \"two_point\"\nsize = 32\nwindow = 4\n\n\
         [[heads]]\ntype = \"classification\"\nname = \"class\"\n\n[training]\n{training}\n"
    );
    LoadedConfig::from_str(&text, Path::new("run.toml")).unwrap_err().to_string()
}

#[test]
fn bad_augment_settings_name_their_line() {
    let e = config_error("augment = [\"hflip\", \"rot45\"]", "");
    assert!(e.contains("line 3") && e.contains("\"rot45\""), "{e}");
    for name in Transform::ALL {
        assert!(e.contains(&format!("\"{}\"", name.name())), "the allowed names are listed: {e}");
    }
    let e = config_error("augment = [\"vflip\", \"vflip\"]", "");
    assert!(e.contains("line 3") && e.contains("\"vflip\" twice"), "{e}");
    let e = config_error("tta = true", "");
    assert!(e.contains("line 3") && e.contains("data.augment is empty"), "{e}");
    let e = config_error("augment = [\"hflip\"]", "folds = 3");
    assert!(e.contains("line 15") && e.contains("folds with data.augment"), "{e}");
}
