//! `furcate experiment` end to end on a tiny synthetic set: two points, their
//! run folders, results.csv/results.md/plots, cached features reused, and a
//! resumed sweep that reads finished points back instead of retraining.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{class_and_value_heads, config_text, dataset as make_dataset, furcate, text, LITE0_32};

fn run(args: &[&str]) -> Output {
    furcate().args(args).output().expect("the binary runs")
}

/// 2 morphologies x 2 volume fractions x 5 images.
fn dataset(dir: &Path) -> PathBuf {
    make_dataset(dir, 2, 5)
}

/// The heads every sweep here trains: the volume fraction as a class and as a value.
fn fraction_heads() -> String {
    class_and_value_heads("volume_fraction_class", "volume_fraction")
}

#[test]
fn two_point_sweep_writes_tables_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let base = config_text(&manifest, LITE0_32, &fraction_heads(), "epochs = 5\n");
    std::fs::write(dir.path().join("base.toml"), base).unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        r#"base = "base.toml"
out = "sweep"

[overrides]
training = { epochs = 8, validation_fraction = 0.25, patience = 4 }
consistency = [{ value = "volume_fraction", class = "volume_fraction_class" }]

[sweep]
test_fractions = [0.25, 0.5]
seeds = [7]
trunks = [[]]
"#,
    )
    .unwrap();
    let exp_s = exp.to_str().unwrap();
    let o = run(&["--quiet", "experiment", exp_s]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let sweep = dir.path().join("sweep");
    let names = [
        "efficientnet_lite0_volume_fraction_class+volume_fraction_trunk-none_test0.25_seed7",
        "efficientnet_lite0_volume_fraction_class+volume_fraction_trunk-none_test0.50_seed7",
    ];
    for n in names {
        assert!(sweep.join(n).join("metrics.json").is_file(), "missing run folder {n}: {out}");
        let cfg = std::fs::read_to_string(sweep.join(n).join("config.toml")).unwrap();
        assert!(cfg.contains("epochs = 8") && cfg.contains("seed = 7"), "overrides not applied: {cfg}");
    }
    // Features are extracted by the first point only; the second reads the cache.
    assert!(out.contains("20 extracted, 0 from cache"), "{out}");
    assert!(out.contains("0 extracted, 20 from cache"), "{out}");

    let csv = std::fs::read_to_string(sweep.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    for col in
        ["volume_fraction_class_error_rate", "volume_fraction_mae", "volume_fraction_rounded_error_rate"]
    {
        assert!(header.contains(&col), "{col} not in {header:?}");
    }
    let row: Vec<&str> = lines[1].split(',').collect();
    let at = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(at("train_fraction"), "0.75");
    let mae: f64 = at("volume_fraction_mae").parse().unwrap();
    assert!(mae.is_finite() && mae >= 0.0);
    let rounded: f64 = at("volume_fraction_rounded_error_rate").parse().unwrap();
    assert!((0.0..=1.0).contains(&rounded));
    assert!(at("best_epoch").parse::<usize>().unwrap() <= 8);

    let md = std::fs::read_to_string(sweep.join("results.md")).unwrap();
    assert!(md.contains("| 0.25-0.75 |") && md.contains("| 0.5-0.5 |"), "{md}");
    assert!(md.contains("volume_fraction rounded to class: error"), "{md}");
    assert!(out.contains(&md), "the command prints results.md");
    for head in ["volume_fraction_class", "volume_fraction"] {
        let png = std::fs::read(sweep.join(format!("error_{head}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    // A second call reads the finished points back and writes the same table.
    let o = run(&["--quiet", "experiment", exp_s]);
    let again = text(&o);
    assert!(o.status.success(), "{again}");
    assert_eq!(again.matches("already done, read back").count(), 2, "{again}");
    assert_eq!(std::fs::read_to_string(sweep.join("results.md")).unwrap(), md);
    // The sweep's and its runs' locks are gone with them.
    let hidden = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect::<Vec<_>>()
    };
    assert!(hidden(&sweep).is_empty() && hidden(dir.path()).is_empty(), "{:?}", hidden(&sweep));

    // A sweep on a folder another process holds fails at once, naming it.
    let held = furcate_core::fsutil::OutputLock::acquire(&sweep, false).unwrap();
    let o = run(&["--quiet", "experiment", exp_s]);
    let busy = text(&o);
    assert!(!o.status.success(), "{busy}");
    assert!(busy.contains(&format!("pid {}", std::process::id())) && busy.contains("--wait"), "{busy}");
    assert!(!busy.contains("read back"), "it went on: {busy}");
    drop(held);
}

#[test]
fn unknown_head_in_a_sweep_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        "[data]\nmanifest = \"m.csv\"\n[extractor]\ntype = \"efficientnet_lite0\"\n[[heads]]\ntype = \"classification\"\nname = \"morphology\"\n",
    )
    .unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(&exp, "base = \"base.toml\"\n[sweep]\nhead_sets = [[\"phase\"]]\n").unwrap();
    let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
    let out = text(&o);
    assert!(!o.status.success());
    assert!(out.contains("exp.toml") && out.contains("`phase`") && out.contains("morphology"), "{out}");
}

/// A base config on a concat of two `two_point` extractors: its taps are
/// `0.two_point` and `1.two_point` (the names repeat, so they are numbered).
fn two_tap_base(dir: &Path) {
    let manifest = dataset(dir);
    let extractor =
        "[extractor]\ntype = \"concat\"\nextractors = [{ type = \"two_point\", size = 32, window = 4 }, \
                     { type = \"two_point\", size = 32, window = 8 }]\n";
    let base = config_text(&manifest, extractor, &fraction_heads(), "epochs = 5\n");
    std::fs::write(dir.join("base.toml"), base).unwrap();
}

#[test]
fn taps_sweep_gives_every_head_the_taps_and_draws_the_bifurcation_map() {
    let dir = tempfile::tempdir().unwrap();
    two_tap_base(dir.path());
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        r#"base = "base.toml"
out = "sweep"

[sweep]
test_fractions = [0.25, 0.5]
seeds = [3]
taps = [["0.two_point"], ["1.two_point"], ["0.two_point", "1.two_point"]]
"#,
    )
    .unwrap();
    let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let sweep = dir.path().join("sweep");
    let taps: [&[&str]; 3] = [&["0.two_point"], &["1.two_point"], &["0.two_point", "1.two_point"]];
    for t in taps {
        let label = t.join("+");
        for tf in ["0.25", "0.50"] {
            let name = format!(
                "concat_volume_fraction_class+volume_fraction_trunk-none_taps-{label}_test{tf}_seed3"
            );
            let run_dir = sweep.join(&name);
            let cfg = std::fs::read_to_string(run_dir.join("config.toml"))
                .unwrap_or_else(|e| panic!("missing run folder {name}: {e}\n{out}"));
            // The resolved config may spread a list over lines: compare without white space.
            let list =
                format!("taps=[{}]", t.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(","));
            let flat: String = cfg.split_whitespace().collect::<String>().replace(",]", "]");
            assert_eq!(flat.matches(&list).count(), 2, "both heads read {label}: {cfg}");
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap())
                    .unwrap();
            let heads = m["choices"]["heads"].as_array().expect("metrics.json has choices.heads");
            assert_eq!(heads.len(), 2, "{m}");
            for h in heads {
                let read: Vec<&str> =
                    h["taps"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert_eq!(read, t, "head {} read {read:?}", h["head"]);
            }
        }
    }

    let csv = std::fs::read_to_string(sweep.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "taps").expect("a taps column");
    let labels: Vec<&str> = lines[1..].iter().map(|l| l.split(',').nth(col).unwrap()).collect();
    assert_eq!(
        labels,
        [
            "0.two_point",
            "0.two_point",
            "1.two_point",
            "1.two_point",
            "0.two_point+1.two_point",
            "0.two_point+1.two_point"
        ]
    );

    let md = std::fs::read_to_string(sweep.join("results.md")).unwrap();
    assert!(
        md.contains("### concat | volume_fraction_class+volume_fraction | trunk none | taps 1.two_point"),
        "{md}"
    );
    let map = &md[md.find("## Bifurcation map").unwrap_or_else(|| panic!("no bifurcation map: {md}"))..];
    for head in ["volume_fraction_class", "volume_fraction"] {
        assert!(map.contains(&format!("(bifurcation_{head}.png)")), "{map}");
        let png = std::fs::read(sweep.join(format!("bifurcation_{head}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "bifurcation_{head}.png is not a PNG");
    }
    assert!(map.contains("| taps | test 0.25 | test 0.5 |"), "{map}");
    // Rows in sweep order; error rates in % for the class head, MAE for the value head.
    let rows: Vec<&str> = map.lines().filter(|l| l.starts_with("| 0.") || l.starts_with("| 1.")).collect();
    assert_eq!(rows.len(), 6, "{map}");
    assert!(rows[0].starts_with("| 0.two_point | ") && rows[0].contains(" %"), "{map}");
    assert!(rows[2].starts_with("| 0.two_point+1.two_point | "), "{map}");
    assert!(
        rows[3].starts_with("| 0.two_point | ") && !rows[3].contains('%') && rows[3].contains(" ± "),
        "{map}"
    );
}

#[test]
fn bad_taps_in_a_sweep_are_named() {
    let dir = tempfile::tempdir().unwrap();
    two_tap_base(dir.path());
    let exp = dir.path().join("exp.toml");
    let fails = |sweep: &str| {
        std::fs::write(&exp, format!("base = \"base.toml\"\n[sweep]\n{sweep}\n")).unwrap();
        let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
        let out = text(&o);
        assert!(!o.status.success(), "{sweep}: {out}");
        assert!(out.contains("exp.toml"), "{out}");
        out
    };
    let out = fails("taps = [[\"0.two_point\"], []]");
    assert!(out.contains("sweep.taps[1] is empty"), "{out}");
    let out = fails("taps = [[\"0.two_point\"], [\"0.two_point\"]]");
    assert!(out.contains("sweep.taps[1] repeats sweep.taps[0]"), "{out}");
    // An unknown tap is caught by the point's run config check.
    let out = fails("taps = [[\"stem\"]]");
    assert!(out.contains("unknown tap `stem`") && out.contains("0.two_point, 1.two_point"), "{out}");
}

#[test]
fn the_bifurcation_evidence_sweeps_every_single_tap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/evidence/bifurcation.toml");
    let e = furcate_core::experiment::Experiment::from_file(&path).unwrap();
    let taps = ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head"];
    assert_eq!(e.points.len(), taps.len() * 2);
    for (i, p) in e.points.iter().enumerate() {
        let tap = taps[i / 2];
        assert_eq!(p.taps, tap);
        assert!(p.name.contains(&format!("_taps-{tap}_")), "{}", p.name);
        assert_eq!(p.heads, "morphology+volume_fraction_class+volume_fraction");
        assert_eq!(p.config.matches(&format!("taps = [\"{tap}\"]")).count(), 3, "{}", p.config);
        assert!(p.config.contains("optimizer = \"lbfgs\"") && p.config.contains("weight_decay = \"auto\""));
    }
}

/// `sweep.folds`: a point per folds value; a cross-validated group's table
/// gives the mean ± std over its folds.
#[test]
fn folds_sweep_tables_the_fold_mean_and_std() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = make_dataset(dir.path(), 2, 6);
    let extractor = "[extractor]\ntype = \"two_point\"\nsize = 32\nthreshold = 0.5\nwindow = 4\nstride = 2\n";
    let base = config_text(&manifest, extractor, &fraction_heads(), "epochs = 5\n");
    std::fs::write(dir.path().join("base.toml"), base).unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        "base = \"base.toml\"\nout = \"sweep\"\n\n[sweep]\ntest_fractions = [0.25]\nfolds = [0, 3]\n",
    )
    .unwrap();
    let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let sweep = dir.path().join("sweep");
    let md = std::fs::read_to_string(sweep.join("results.md")).unwrap();
    assert!(md.contains("| 3 folds"), "{md}");
    assert!(md.contains("mean ± std over the 3 folds of every seed"), "{md}");
    assert!(md.contains("mean ± std over seeds"), "the one-split group: {md}");
    let csv = std::fs::read_to_string(sweep.join("results.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(",folds,"), "{csv}");
    let cv_point = std::fs::read_dir(&sweep)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_folds3_"))
        .expect("a cross-validated point");
    assert!(cv_point.join("folds.csv").is_file());
    // folds = 1 is refused, naming the sweep.
    std::fs::write(&exp, "base = \"base.toml\"\n[sweep]\nfolds = [1]\n").unwrap();
    let o = run(&["--quiet", "experiment", exp.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("sweep.folds"), "{}", text(&o));
}
