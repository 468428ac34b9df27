//! `furcate suggest`: the CSV to fill in and the contact sheet from a trained
//! run, its errors, and `--simulate`'s learning curves.

use std::path::Path;

use crate::common::{class_and_value_heads, config_text, dataset_3x6, run, s, text, write_config, LITE0_32};

/// A run of a class and a value head on the 3 x 2 x 6 set (a quarter held out).
fn trained(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let manifest = dataset_3x6(dir);
    let heads = class_and_value_heads("morphology", "volume_fraction");
    let text_ = config_text(
        &manifest,
        LITE0_32,
        &heads,
        "optimizer = \"lbfgs\"\nepochs = 50\ntest_fraction = 0.25\n",
    );
    let cfg = write_config(dir, "run.toml", &text_);
    let out = dir.join("run");
    let o = run(&["train", s(&cfg), "--out", s(&out), "--no-report"]);
    assert!(o.status.success(), "{}", text(&o));
    (out, manifest.parent().unwrap().join("images"))
}

#[test]
fn suggest_writes_a_csv_to_fill_in_and_a_contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let (run_dir, images) = trained(dir.path());
    let csv_path = dir.path().join("next.csv");
    let o = run(&["suggest", s(&run_dir), s(&images), "-n", "4", "--out", s(&csv_path)]);
    assert!(o.status.success(), "{}", text(&o));
    // The run trained on 27 of the 36 images: those are left out of the pool.
    let said = text(&o);
    assert!(said.contains("27 pool image(s) the run trained on are left out"), "{said}");
    assert!(said.contains("head `volume_fraction` is a value head without a spread"), "{said}");
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "file",
            "morphology",
            "volume_fraction",
            "morphology_predicted",
            "morphology_probability",
            "volume_fraction_predicted",
            "rank",
            "uncertainty",
            "reason"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let mut files = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        assert!(files.insert(row[0].to_string()), "each image once");
        assert!(Path::new(&row[0]).is_file());
        assert_eq!((&row[1], &row[2]), ("", ""), "label columns left to fill in");
        assert_eq!(row[6].parse::<usize>().unwrap(), i + 1);
        let u: f64 = row[7].parse().unwrap();
        assert!((0.0..=1.0).contains(&u));
        assert!(row[8].contains("x distance"), "{}", &row[8]);
    }
    let sheet = image::open(dir.path().join("next.png")).expect("the contact sheet is a PNG");
    assert!(sheet.width() >= 4 * 192 && sheet.height() >= 192, "{}x{}", sheet.width(), sheet.height());

    // Every strategy runs; random is seeded.
    for strategy in ["margin", "entropy", "kcentre", "random"] {
        let out = dir.path().join(format!("{strategy}.csv"));
        let o = run(&[
            "suggest",
            s(&run_dir),
            s(&images),
            "-n",
            "3",
            "--strategy",
            strategy,
            "--no-sheet",
            "--out",
            s(&out),
        ]);
        assert!(o.status.success(), "{strategy}: {}", text(&o));
        assert_eq!(csv::Reader::from_path(&out).unwrap().records().count(), 3);
        assert!(!out.with_extension("png").exists(), "--no-sheet");
    }

    // A bad pool entry is named; an unknown head too.
    let absent = images.join("absent.png");
    let o = run(&["suggest", s(&run_dir), s(&absent)]);
    assert!(!o.status.success());
    assert!(text(&o).contains(s(&absent)), "{}", text(&o));
    let o =
        run(&["suggest", s(&run_dir), s(&images), "--head", "grain", "--out", s(&dir.path().join("x.csv"))]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no head `grain` in the run; its heads are: morphology, volume_fraction"),
        "{}",
        text(&o)
    );
}

#[test]
fn simulate_writes_learning_curves_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset_3x6(dir.path());
    let heads = class_and_value_heads("morphology", "volume_fraction");
    let base = config_text(&manifest, LITE0_32, &heads, "optimizer = \"lbfgs\"\nepochs = 30\n");
    write_config(dir.path(), "base.toml", &base);
    let sim =
        "base = \"base.toml\"\nstrategies = [\"random\", \"diverse\"]\nseeds = [0]\ntest_fraction = 0.5\n\
               batch = 2\nrounds = 2\nheads = [\"morphology\"]\n";
    let file = write_config(dir.path(), "active.toml", sim);
    let out = dir.path().join("curves");
    let o = run(&["suggest", "--simulate", s(&file), "--out", s(&out)]);
    assert!(o.status.success(), "{}", text(&o));
    let mut r = csv::Reader::from_path(out.join("curve.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    // 2 strategies x 3 rounds (start + 2) x 2 heads.
    assert_eq!(rows.len(), 12);
    let labels = |strategy: &str| -> Vec<usize> {
        rows.iter()
            .filter(|r| &r[0] == strategy && &r[4] == "morphology")
            .map(|r| r[3].parse().unwrap())
            .collect()
    };
    // The start: one image of each of the 3 morphologies; then 2 a round.
    assert_eq!(labels("random"), [3, 5, 7]);
    assert_eq!(labels("diverse"), [3, 5, 7]);
    assert!(rows.iter().any(|r| &r[5] == "mae"), "the value head is scored by its MAE");
    let md = std::fs::read_to_string(out.join("curve.md")).unwrap();
    assert!(md.contains("| round | labels | random | diverse |"), "{md}");
    assert!(md.contains("Labels needed to reach the random choice's final error"), "{md}");
    for head in ["morphology", "volume_fraction"] {
        image::open(out.join(format!("curve_{head}.png"))).expect("a PNG per head");
    }

    for (bad, says) in [
        ("batch = 2", ("batch = 0", "line 5: batch must be at least 1")),
        ("heads = [\"morphology\"]", ("heads = [\"grain\"]", "line 7: no head `grain`")),
        ("[\"random\", \"diverse\"]", ("[\"random\", \"clever\"]", "unknown variant `clever`")),
    ] {
        let file = write_config(dir.path(), "bad.toml", &sim.replace(bad, says.0));
        let o = run(&["suggest", "--simulate", s(&file)]);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(s(&file)) && t.contains(says.1), "{t}");
    }
}
