//! Config parsing: the embedded default, TOML round trip, and each bad config
//! giving an error that names the field and the TOML line.

use std::path::Path;

use furcate_synth::{Error, Morphology, Plane, SynthConfig, DEFAULT_CONFIG_TOML};

const BASE: &str = r#"size = 64
images_per_class = 3
seed = 4
volume_fractions = [0.1, 0.3]
jitter = 0.5

[[morphologies]]
name = "a"
sigma_x = 2.0
sigma_y = 3.0
sigma_z = 1.0
plane = "xz"

[[morphologies]]
name = "b"
sigma_x = 4.0
sigma_y = 1.0
sigma_z = 2.0
plane = [0.0, 1.0, 1.0]
rotation = 30.0
"#;

fn parse(text: &str) -> Result<SynthConfig, Error> {
    SynthConfig::from_toml_str(text, Path::new("cfg.toml"))
}

/// 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in text")) + 1
}

#[test]
fn the_embedded_default_is_the_thesis_set() {
    let cfg = SynthConfig::default();
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/synthetic.toml")).unwrap();
    assert_eq!(file, DEFAULT_CONFIG_TOML);
    assert_eq!(cfg, parse(&file).unwrap());
    assert_eq!((cfg.size, cfg.images_per_class, cfg.jitter), (128, 50, 0.0));
    assert_eq!(cfg.morphologies.len(), 7);
    assert_eq!(cfg.volume_fractions.len(), 10);
    assert_eq!(cfg.image_count(), 3500);
    let labels = cfg.class_labels();
    assert_eq!(labels.first().map(String::as_str), Some("0.05"));
    assert_eq!(labels.last().map(String::as_str), Some("0.50"));
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(sorted, labels, "labels sort as the fractions do");
    // The 7 morphologies have 7 different in-plane covariances.
    let covs: Vec<_> = cfg.morphologies.iter().map(|m| m.in_plane_covariance().unwrap()).collect();
    for (i, a) in covs.iter().enumerate() {
        for b in &covs[i + 1..] {
            let diff: f64 = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).sum();
            assert!(diff > 1.0, "two default morphologies look alike: {a:?} {b:?}");
        }
    }
}

#[test]
fn values_parse_and_round_trip() {
    let cfg = parse(BASE).unwrap();
    assert_eq!(cfg.size, 64);
    assert_eq!(cfg.morphologies[0].plane, Plane::Xz);
    assert_eq!(cfg.morphologies[0].rotation, 0.0);
    assert_eq!(cfg.morphologies[1].plane, Plane::Normal([0.0, 1.0, 1.0]));
    assert_eq!(cfg.morphologies[1].rotation, 30.0);
    assert_eq!(parse(&cfg.to_toml_string()).unwrap(), cfg);
    // Omitted keys take their documented defaults; omitted morphologies are the default 7.
    let minimal = parse("seed = 3\n").unwrap();
    let default = SynthConfig::default();
    assert_eq!(minimal, SynthConfig { seed: 3, ..default });
    let one = parse("[[morphologies]]\nname = \"x\"\nsigma_x = 1\nsigma_y = 2\nsigma_z = 3\n").unwrap();
    assert_eq!(
        one.morphologies,
        [Morphology {
            name: "x".into(),
            sigma_x: 1.0,
            sigma_y: 2.0,
            sigma_z: 3.0,
            plane: Plane::Xy,
            rotation: 0.0
        }]
    );
}

/// Replaces the first occurrence of `from` in BASE.
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?}");
    BASE.replacen(from, to, 1)
}

#[test]
fn invalid_values_name_field_and_line() {
    let cases = [
        (edit("size = 64", "size = 16"), "size", "size = 16"),
        (edit("images_per_class = 3", "images_per_class = 0"), "images_per_class", "images_per_class = 0"),
        (edit("jitter = 0.5", "jitter = 1.5"), "jitter", "jitter = 1.5"),
        (edit("[0.1, 0.3]", "[0.1, 1.0]"), "volume_fractions[1]", "volume_fractions"),
        (edit("[0.1, 0.3]", "[\n  0.1,\n  0.0,\n]"), "volume_fractions[1]", "0.0,"),
        (edit("[0.1, 0.3]", "[0.1, 0.3, 0.1]"), "volume_fractions[2]", "volume_fractions"),
        (edit("[0.1, 0.3]", "[]"), "volume_fractions", "volume_fractions"),
        (edit("sigma_x = 4.0", "sigma_x = 0.0"), "morphologies[1].sigma_x", "sigma_x = 0.0"),
        (edit("sigma_y = 3.0", "sigma_y = -3.0"), "morphologies[0].sigma_y", "sigma_y = -3.0"),
        (edit("sigma_z = 2.0", "sigma_z = nan"), "morphologies[1].sigma_z", "sigma_z = nan"),
        (edit("name = \"b\"", "name = \"a\""), "morphologies[1].name", "name = \"a\"\nsigma_x = 4"),
        (edit("name = \"b\"", "name = \"b/c\""), "morphologies[1].name", "name = \"b/c\""),
        (edit("[0.0, 1.0, 1.0]", "[0.0, 0.0, 0.0]"), "morphologies[1].plane", "plane = [0.0, 0.0"),
        (edit("rotation = 30.0", "rotation = inf"), "morphologies[1].rotation", "rotation = inf"),
        (
            format!("morphologies = []\n{}", &BASE[..BASE.find("[[").unwrap()]),
            "morphologies",
            "morphologies = []",
        ),
    ];
    for (text, field, marker) in cases {
        let err = parse(&text).unwrap_err();
        let Error::Invalid { field: got, line, .. } = &err else {
            panic!("{field}: expected Invalid, got {err}")
        };
        assert_eq!(got, field, "{err}");
        // The marker may span two lines (to pick the second `name`): its first line is the one.
        let want = line_of(&text.replace(marker, "\u{1}"), "\u{1}");
        assert_eq!(*line, Some(want), "{field}: {err}");
        assert!(err.to_string().starts_with(&format!("cfg.toml:{want}: {field}: ")), "{err}");
    }
}

#[test]
fn syntax_errors_unknown_keys_and_types_give_the_line() {
    let cases = [
        (edit("seed = 4", "seed = 4\ncolour = \"red\""), "colour", "colour"),
        (edit("rotation = 30.0", "rotation = 30.0\nsigma_w = 1.0"), "sigma_w", "sigma_w"),
        (edit("size = 64", "size = "), "", "size ="),
        (edit("plane = \"xz\"", "plane = \"xw\""), "xw", "plane = \"xw\""),
        (edit("[0.0, 1.0, 1.0]", "[0.0, 1.0]"), "", "plane = [0.0, 1.0]"),
        (edit("seed = 4", "seed = -4"), "", "seed = -4"),
        (edit("size = 64", "size = \"big\""), "", "size = \"big\""),
    ];
    for (text, mention, marker) in cases {
        let err = parse(&text).unwrap_err();
        let Error::Toml { line, message, .. } = &err else { panic!("{marker}: expected Toml, got {err}") };
        assert!(message.contains(mention), "{err}");
        assert_eq!(*line, Some(line_of(&text, marker)), "{marker}: {err}");
        assert!(err.to_string().starts_with(&format!("cfg.toml:{}: ", line_of(&text, marker))), "{err}");
    }
}

#[test]
fn configs_built_in_code_are_validated_too() {
    let mut cfg = SynthConfig::default();
    cfg.morphologies.clear();
    let err = cfg.validate().unwrap_err();
    assert!(matches!(&err, Error::Invalid { field, line: None, .. } if field == "morphologies"), "{err}");
    let cfg = SynthConfig { seed: u64::MAX, ..SynthConfig::default() };
    assert!(matches!(cfg.validate(), Err(Error::Invalid { field, .. }) if field == "seed"));
    assert!(furcate_synth::generate(&cfg).is_err());
}
