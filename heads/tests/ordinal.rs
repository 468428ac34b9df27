//! The `ordinal` head: class order, shapes, loss against a hand computation,
//! a single class, monotone decoding, scores and registration.

use furcate_core::{Error, HeadConfig, Prediction};
use furcate_heads::ordinal::{decode_ranks, order_classes, OrdinalConfig};
use tch::Tensor;

use crate::common::{build, CPU};

fn labels<'a>(cells: &[&'a str]) -> Vec<Option<&'a str>> {
    cells.iter().map(|c| Some(*c)).collect()
}

#[test]
fn fit_orders_numeric_labels_by_value_and_others_as_text() {
    let config = OrdinalConfig::new("bin");
    let state = config.fit(&labels(&["0.5", "10", "2", "0.5", " "])).unwrap();
    assert_eq!(state, serde_json::json!({ "classes": ["0.5", "2", "10"] }));
    let state = config.fit(&labels(&["high", "low", "10"])).unwrap();
    assert_eq!(state, serde_json::json!({ "classes": ["10", "high", "low"] }));
    assert_eq!(order_classes(["-1", "1e-1", "0"]), ["-1", "0", "1e-1"]);
    assert!(matches!(config.fit(&[None, Some("  ")]), Err(Error::Invalid(m)) if m.contains("no labels")));
    assert!(config.stratify());
}

#[test]
fn shapes_and_ordered_thresholds() {
    let config = OrdinalConfig { hidden: vec![5], ..OrdinalConfig::new("bin") };
    let (vs, head) = build(&config, 3, &serde_json::json!({ "classes": ["a", "b", "c", "d"] }));
    let out = head.forward(&Tensor::randn([6, 3], CPU), false).unwrap();
    assert_eq!(out.size(), [6, 3]);
    // The three logits of every row are strictly decreasing (ordered biases).
    let diff = out.narrow(1, 1, 2) - out.narrow(1, 0, 2);
    assert!(diff.max().double_value(&[]) < 0.0);
    assert!(vs.variables().contains_key("bias_gaps"));
    assert!(vs.variables().contains_key("out.weight"));
    assert_eq!(head.decode(&out).unwrap().len(), 6);
    // The host sees its classes in rank order (for the consistency metric).
    assert_eq!(head.classes().unwrap(), ["a", "b", "c", "d"]);
}

#[test]
fn loss_matches_a_hand_computation() {
    let (_vs, head) =
        build(&OrdinalConfig::new("bin"), 2, &serde_json::json!({ "classes": ["0", "1", "2"] }));
    // Logits 0 and ln 3: P(y > 0) = 1/2, P(y > 1) = 3/4.
    let output = Tensor::from_slice(&[0.0, 3f64.ln(), 0.0, 3f64.ln()]).view([2, 2]);
    let target = Tensor::from_slice(&[0i64, 2]);
    // Class 0: levels (0, 0): -ln(1/2) - ln(1/4). Class 2: levels (1, 1): -ln(1/2) - ln(3/4).
    let expected = (2f64.ln() + 4f64.ln() + 2f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
    let loss = head.loss(&output, &target).unwrap().double_value(&[]);
    assert!((loss - expected).abs() < 1e-9, "{loss} vs {expected}");
}

#[test]
fn a_single_class_has_zero_loss_and_always_decodes_to_it() {
    let config = OrdinalConfig::new("bin");
    let state = config.fit(&labels(&["x", "x"])).unwrap();
    let (_vs, head) = build(&config, 2, &state);
    let x = Tensor::randn([3, 2], CPU).set_requires_grad(true);
    let out = head.forward(&x, true).unwrap();
    assert_eq!(out.size(), [3, 1]);
    let targets = head.encode(&labels(&["x", "x", "x"])).unwrap();
    let loss = head.masked_loss(&out, &targets).unwrap();
    assert_eq!(loss.double_value(&[]), 0.0);
    loss.backward();
    for p in head.decode(&out).unwrap() {
        assert_eq!(p, Prediction::Class { label: "x".into(), probability: 1.0 });
    }
}

#[test]
fn decoding_is_monotone_in_the_shared_score() {
    // Logits s + b with decreasing b: as s grows the rank never falls.
    let b = Tensor::from_slice(&[1.5, 0.2, -0.7, -3.0]).view([1, 4]);
    let s = Tensor::linspace(-8.0, 8.0, 200, CPU).view([200, 1]);
    let ranks: Vec<usize> = decode_ranks(&(s + b)).into_iter().map(|(r, _)| r).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert_eq!((ranks[0], ranks[199]), (0, 4));

    // Through a built head with a positive weight: increasing feature, increasing class.
    let (vs, head) = build(&OrdinalConfig::new("bin"), 1, &serde_json::json!({ "classes": ["1", "2", "3"] }));
    tch::no_grad(|| {
        let _ = vs.variables()["out.weight"].shallow_clone().fill_(2.0);
    });
    let x = Tensor::linspace(-5.0, 5.0, 50, CPU).view([50, 1]);
    let classes: Vec<String> = head
        .decode(&head.forward(&x, false).unwrap())
        .unwrap()
        .into_iter()
        .map(|p| match p {
            Prediction::Class { label, probability } => {
                assert!((0.0..=1.0).contains(&probability));
                label
            }
            other => panic!("not a class: {other:?}"),
        })
        .collect();
    let ranks: Vec<i32> = classes.iter().map(|c| c.parse().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
    assert_eq!((ranks[0], ranks[49]), (1, 3));
}

#[test]
fn decoded_probability_is_the_mass_of_the_chosen_bin() {
    // P(y > 0) = 0.9, P(y > 1) = 0.6, P(y > 2) = 0.1 -> rank 2 with 0.6 - 0.1.
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let out = Tensor::from_slice(&[logit(0.9), logit(0.6), logit(0.1)]).view([1, 3]);
    let [(rank, p)] = decode_ranks(&out)[..] else { panic!("one row expected") };
    assert_eq!(rank, 2);
    assert!((p - 0.5).abs() < 1e-9);
}

#[test]
fn encode_rejects_unknown_classes_and_masks_missing_ones() {
    let (_vs, head) = build(&OrdinalConfig::new("bin"), 2, &serde_json::json!({ "classes": ["lo", "hi"] }));
    let t = head.encode(&[Some("hi"), None, Some(" lo ")]).unwrap();
    assert_eq!(Vec::<i64>::try_from(&t.values).unwrap(), [1, 0, 0]);
    assert_eq!(Vec::<bool>::try_from(&t.mask).unwrap(), [true, false, true]);
    assert!(
        matches!(head.encode(&[Some("mid")]), Err(Error::Label { index: 0, message }) if message.contains("mid"))
    );
}

#[test]
fn score_reports_error_rate_and_mean_abs_bin_error() {
    let (_vs, head) =
        build(&OrdinalConfig::new("bin"), 2, &serde_json::json!({ "classes": ["0", "1", "2", "3"] }));
    let class = |l: &str| Prediction::Class { label: l.into(), probability: 0.5 };
    let predictions = [class("0"), class("3"), class("1"), class("2"), class("2")];
    let truth = [Some("0"), Some("1"), None, Some("2"), Some("9")];
    let score = head.score(&predictions, &truth).unwrap();
    assert_eq!(score.correct, [Some(true), Some(false), None, Some(true), Some(false)]);
    assert!((score.error_rate.unwrap() - 0.5).abs() < 1e-12);
    assert!((score.metrics.classes.as_ref().unwrap().accuracy.unwrap() - 0.5).abs() < 1e-12);
    // Bins: |0-0|, |1-3|, |2-2| over the three known labels.
    assert!((score.metrics.bins.as_ref().unwrap().mean_abs_bin_error.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(score.metrics.bins.as_ref().unwrap().unknown_labels, 1);
    assert!(head.score(&predictions[..2], &truth).is_err());
}

#[test]
fn is_registered_and_parses_from_toml() {
    assert!(furcate_core::registry::head_types().contains(&"ordinal".to_string()));
    let config: Box<dyn HeadConfig> =
        toml::from_str("type = \"ordinal\"\nname = \"bin\"\nhidden = [4]\nweight = 2.0").unwrap();
    assert_eq!((config.name(), config.loss_weight(), config.stratify()), ("bin", 2.0, true));
    let bad = toml::from_str::<Box<dyn HeadConfig>>("type = \"ordinal\"\nname = \"bin\"\nclasses = 3");
    assert!(bad.is_err());
}

#[test]
fn unknown_keys_name_their_line_and_new_matches_the_toml_defaults() {
    // Through typetag, toml names the line of the head's `[[heads]]` header;
    // the same for the crate's other head.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        heads: Vec<Box<dyn HeadConfig>>,
    }
    for (kind, key) in [("ordinal", "classes"), ("gaussian", "bounds"), ("gaussian", "colum")] {
        let text = format!(
            "[[heads]]\ntype = \"ordinal\"\nname = \"a\"\n\n[[heads]]\ntype = \"{kind}\"\nname = \"b\"\n\
             hidden = [4]\n{key} = 3"
        );
        let e = toml::from_str::<File>(&text).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains(&format!("unknown field `{key}`")), "{kind}: {e}");
    }
    let e = toml::from_str::<OrdinalConfig>("name = \"bin\"\nweigth = 2.0").unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("weigth"), "{e}");
    assert_eq!(toml::from_str::<OrdinalConfig>("name = \"bin\"").unwrap(), OrdinalConfig::new("bin"));
}

#[test]
fn the_heads_crate_registers_its_type_names() {
    use furcate_core::registry;
    let heads = registry::head_types();
    for name in ["ordinal", "gaussian", "classification"] {
        assert!(heads.iter().any(|h| h == name), "{name} missing from {heads:?}");
        assert!(registry::typetag_knows_head(name));
    }
}

/// Wrong shapes are errors naming the head, not panics of libtorch.
#[test]
fn bad_shapes_are_errors_naming_the_head() {
    let (_vs, head) =
        build(&OrdinalConfig::new("bin"), 3, &serde_json::json!({ "classes": ["a", "b", "c"] }));
    let e = head.forward(&Tensor::randn([2, 4], CPU), false).unwrap_err().to_string();
    assert!(e.contains("head `bin`") && e.contains("forward"), "{e}");
    let out = head.forward(&Tensor::randn([2, 3], CPU), false).unwrap();
    let e = head.loss(&out, &Tensor::from_slice(&[0i64, 1, 2])).unwrap_err().to_string();
    assert!(e.contains("head `bin`") && e.contains("loss"), "{e}");
    assert!(head.loss(&Tensor::randn([2], CPU), &Tensor::from_slice(&[0i64, 1])).is_err());
    assert!(head.decode(&Tensor::randn([2], CPU)).unwrap_err().to_string().contains("head `bin`"));
}
