//! The built-in heads: configs, fit/state, shapes, losses against hand
//! computations, encoding errors, decoding and scores.

use furcate_core::head::classification::ClassificationConfig;
use furcate_core::head::regression::{RegressionConfig, RegressionLoss};
use furcate_core::{Error, HeadConfig, HeadState, Prediction, PropertyHead};
use tch::{nn, Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Double, Device::Cpu);

/// Builds `config` in a fresh double-precision store.
fn build(config: &dyn HeadConfig, in_dim: i64, state: &HeadState) -> (nn::VarStore, Box<dyn PropertyHead>) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = config.build(vs.root(), in_dim, state).unwrap();
    vs.double();
    (vs, head)
}

/// Sets the output layer to weight 0 and the given bias, so the output is `bias` for every row.
fn constant_output(vs: &nn::VarStore, bias: &[f64]) {
    let vars = vs.variables();
    tch::no_grad(|| {
        let _ = vars["out.weight"].shallow_clone().zero_();
        vars["out.bias"].shallow_clone().copy_(&Tensor::from_slice(bias));
    });
}

fn classes(names: &[&str]) -> HeadState {
    serde_json::json!({ "classes": names })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn classification_fit_gives_sorted_classes_and_shapes() {
    let config = ClassificationConfig { hidden: vec![5, 3], ..ClassificationConfig::new("m") };
    let state =
        config.fit(&[Some("zeta"), None, Some("alpha"), Some(" zeta "), Some(""), Some("mid")]).unwrap();
    assert_eq!(state, classes(&["alpha", "mid", "zeta"]));
    let (vs, head) = build(&config, 4, &state);
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["hidden0.bias", "hidden0.weight", "hidden1.bias", "hidden1.weight", "out.bias", "out.weight"]
    );
    let out = head.forward(&Tensor::randn([7, 4], CPU), true).unwrap();
    assert_eq!(out.size(), [7, 3]);
    let preds = head.decode(&out).unwrap();
    assert_eq!(preds.len(), 7);
    for p in preds {
        let Prediction::Class { label, probability } = p else { panic!("not a class: {p:?}") };
        assert!(["alpha", "mid", "zeta"].contains(&label.as_str()));
        assert!((1.0 / 3.0 - 1e-9..=1.0).contains(&probability));
    }
}

#[test]
fn classification_fit_without_labels_is_an_error() {
    let e = ClassificationConfig::new("m").fit(&[None, Some("  ")]).unwrap_err();
    assert!(e.to_string().contains("no labels"), "{e}");
}

#[test]
fn classification_loss_matches_hand_computation() {
    let config = ClassificationConfig::new("m");
    let (vs, head) = build(&config, 2, &classes(&["a", "b", "c"]));
    // Logits (ln 2, 0, 0): p(a) = 1/2, p(b) = p(c) = 1/4.
    constant_output(&vs, &[2f64.ln(), 0.0, 0.0]);
    let out = head.forward(&Tensor::randn([2, 2], CPU), false).unwrap();
    let loss = head.loss(&out, &Tensor::from_slice(&[0i64, 1])).unwrap().double_value(&[]);
    assert!(close(loss, (2f64.ln() + 4f64.ln()) / 2.0), "{loss}");
    let preds = head.decode(&out).unwrap();
    assert_eq!(preds[0], Prediction::Class { label: "a".into(), probability: 0.5 });
}

#[test]
fn class_weights_and_label_smoothing_change_the_loss_as_defined() {
    let logits = [2f64.ln(), 0.0, 0.0];
    let nll = [2f64.ln(), 4f64.ln(), 4f64.ln()]; // -log p_k
    let target = Tensor::from_slice(&[0i64, 1, 1]);
    let loss_of = |config: ClassificationConfig| {
        let (vs, head) = build(&config, 2, &classes(&["a", "b", "c"]));
        constant_output(&vs, &logits);
        let out = head.forward(&Tensor::randn([3, 2], CPU), false).unwrap();
        head.loss(&out, &target).unwrap().double_value(&[])
    };
    let plain = loss_of(ClassificationConfig::new("m"));
    assert!(close(plain, (nll[0] + 2.0 * nll[1]) / 3.0));

    // Weighted mean: sum w_y * l / sum w_y.
    let weights = [("a".to_string(), 3.0)].into_iter().collect();
    let weighted =
        loss_of(ClassificationConfig { class_weights: Some(weights), ..ClassificationConfig::new("m") });
    assert!(close(weighted, (3.0 * nll[0] + 2.0 * nll[1]) / 5.0), "{weighted}");

    // Smoothing eps: (1 - eps) * nll_y + eps * mean_k nll_k.
    let eps = 0.3;
    let smoothed = loss_of(ClassificationConfig { label_smoothing: eps, ..ClassificationConfig::new("m") });
    let uniform = nll.iter().sum::<f64>() / 3.0;
    let expected =
        ((1.0 - eps) * nll[0] + eps * uniform + 2.0 * ((1.0 - eps) * nll[1] + eps * uniform)) / 3.0;
    assert!(close(smoothed, expected), "{smoothed} vs {expected}");
}

#[test]
fn class_weights_must_name_known_classes_and_be_positive() {
    let state = classes(&["a", "b"]);
    let vs = nn::VarStore::new(Device::Cpu);
    let unknown = [("c".to_string(), 2.0)].into_iter().collect();
    let config = ClassificationConfig { class_weights: Some(unknown), ..ClassificationConfig::new("m") };
    let e = config.build(vs.root(), 2, &state).err().unwrap().to_string();
    assert!(e.contains("`c`") && e.contains("a, b"), "{e}");
    let zero = [("a".to_string(), 0.0)].into_iter().collect();
    let config = ClassificationConfig { class_weights: Some(zero), ..ClassificationConfig::new("m") };
    assert!(config.build(vs.root(), 2, &state).is_err());
    let config = ClassificationConfig { label_smoothing: 1.0, ..ClassificationConfig::new("m") };
    assert!(config.build(vs.root(), 2, &state).is_err());
}

#[test]
fn classification_encode_maps_labels_and_rejects_unknown_classes() {
    let (_vs, head) = build(&ClassificationConfig::new("m"), 2, &classes(&["a", "b"]));
    let t = head.encode(&[Some("b"), None, Some("a")]).unwrap();
    assert_eq!(Vec::<i64>::try_from(&t.values).unwrap()[..], [1, 0, 0]);
    assert_eq!(t.values.kind(), Kind::Int64);
    assert_eq!(Vec::<bool>::try_from(&t.mask).unwrap(), [true, false, true]);
    match head.encode(&[Some("a"), None, Some("weird")]) {
        Err(Error::Label { index, message }) => {
            assert_eq!(index, 2);
            assert!(message.contains("`weird`") && message.contains("a, b"), "{message}");
        }
        other => panic!("expected a label error, got {other:?}"),
    }
}

#[test]
fn a_single_class_is_allowed() {
    let config = ClassificationConfig::new("m");
    let state = config.fit(&[Some("only"), None, Some("only")]).unwrap();
    let (_vs, head) = build(&config, 3, &state);
    let out = head.forward(&Tensor::randn([4, 3], CPU), false).unwrap();
    assert_eq!(out.size(), [4, 1]);
    let t = head.encode(&[Some("only"), Some("only"), None, Some("only")]).unwrap();
    assert!(close(head.masked_loss(&out, &t).unwrap().double_value(&[]), 0.0));
    assert_eq!(head.decode(&out).unwrap()[0], Prediction::Class { label: "only".into(), probability: 1.0 });
}

#[test]
fn classification_score_counts_confusions() {
    let (_vs, head) = build(&ClassificationConfig::new("m"), 2, &classes(&["a", "b"]));
    let p = |l: &str| Prediction::Class { label: l.into(), probability: 0.9 };
    let preds = [p("a"), p("a"), p("b"), p("b"), p("a")];
    let labels = [Some("a"), Some("b"), Some("b"), None, Some("new")];
    let s = head.score(&preds, &labels).unwrap();
    assert_eq!(s.correct, [Some(true), Some(false), Some(true), None, Some(false)]);
    assert!(close(s.error_rate.unwrap(), 0.5));
    let m = s.metrics.classes.as_ref().expect("a class head's figures");
    assert_eq!(m.n, 4);
    assert_eq!(m.labels, ["a", "b", "new"]);
    assert_eq!(m.confusion, [[1, 0, 0], [1, 1, 0], [1, 0, 0]]);
    let b = &m.per_class[1];
    assert_eq!(b.class, "b");
    assert!(close(b.precision, 1.0));
    assert!(close(b.recall, 0.5));
    // F1: a = 2 * (1/3 * 1) / (4/3) = 0.5, b = 2/3, new = 0.
    assert!(close(m.macro_f1.unwrap(), (0.5 + 2.0 / 3.0) / 3.0));
    // metrics.json keeps its names.
    let json = serde_json::to_value(&s.metrics).unwrap();
    assert_eq!(json["classes"], serde_json::json!(["a", "b", "new"]));
    assert_eq!(json["confusion_matrix"], serde_json::json!([[1, 0, 0], [1, 1, 0], [1, 0, 0]]));
    assert_eq!(serde_json::from_value::<furcate_core::metrics::HeadMetrics>(json).unwrap(), s.metrics);
    assert!(head.score(&preds[..2], &labels).is_err());
}

#[test]
fn regression_fit_standardises_and_decode_restores_units() {
    let config = RegressionConfig::new("v");
    let state = config.fit(&[Some("1"), Some("3"), None, Some(" 5 ")]).unwrap();
    let std = (8.0f64 / 3.0).sqrt();
    assert!(close(state["mean"].as_f64().unwrap(), 3.0));
    assert!(close(state["std"].as_f64().unwrap(), std));
    let (vs, head) = build(&config, 2, &state);
    let t = head.encode(&[Some("5"), None]).unwrap();
    assert_eq!(t.values.size(), [2, 1]);
    assert!((t.values.double_value(&[0, 0]) - 2.0 / std).abs() < 1e-6);
    assert_eq!(Vec::<bool>::try_from(&t.mask).unwrap(), [true, false]);
    constant_output(&vs, &[0.5]);
    let out = head.forward(&Tensor::randn([3, 2], CPU), false).unwrap();
    assert_eq!(out.size(), [3, 1]);
    let Prediction::Value { value, std: None } = head.decode(&out).unwrap()[0] else { panic!() };
    assert!(close(value, 3.0 + 0.5 * std), "{value}");

    let raw = RegressionConfig { standardise: false, ..RegressionConfig::new("v") };
    let (vs, head) = build(&raw, 2, &state);
    constant_output(&vs, &[0.5]);
    let out = head.forward(&Tensor::randn([1, 2], CPU), false).unwrap();
    assert_eq!(head.decode(&out).unwrap()[0], Prediction::Value { value: 0.5, std: None });
    assert!(close(head.encode(&[Some("5")]).unwrap().values.double_value(&[0, 0]), 5.0));
}

#[test]
fn constant_regression_targets_work() {
    let config = RegressionConfig::new("v");
    let state = config.fit(&[Some("0.25"), Some("0.25")]).unwrap();
    assert_eq!(state, serde_json::json!({ "mean": 0.25, "std": 1.0 }));
    let (vs, head) = build(&config, 2, &state);
    constant_output(&vs, &[0.0]);
    let out = head.forward(&Tensor::randn([2, 2], CPU), false).unwrap();
    let t = head.encode(&[Some("0.25"), Some("0.25")]).unwrap();
    assert!(close(head.masked_loss(&out, &t).unwrap().double_value(&[]), 0.0));
    let preds = head.decode(&out).unwrap();
    let s = head.score(&preds, &[Some("0.25"), Some("0.25")]).unwrap();
    assert_eq!(s.metrics.values.as_ref().unwrap().r2, None);
    assert!(close(s.metrics.mae().unwrap(), 0.0));
}

#[test]
fn regression_labels_must_be_finite_numbers() {
    let config = RegressionConfig::new("v");
    for bad in ["abc", "NaN", "inf", "-inf", "1,5"] {
        match config.fit(&[Some("1"), None, Some(bad)]) {
            Err(Error::Label { index: 2, message }) => assert!(message.contains(bad), "{message}"),
            other => panic!("{bad}: expected a label error at 2, got {other:?}"),
        }
    }
    let (_vs, head) = build(&config, 2, &serde_json::json!({ "mean": 0.0, "std": 1.0 }));
    assert!(matches!(head.encode(&[Some("x")]), Err(Error::Label { index: 0, .. })));
    assert!(matches!(head.encode(&[None, Some("nan")]), Err(Error::Label { index: 1, .. })));
    assert!(config.fit(&[None]).is_err());
}

#[test]
fn regression_losses_match_hand_computation() {
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    let out = Tensor::from_slice(&[0.0f64, 0.0]).reshape([2, 1]);
    let target = Tensor::from_slice(&[0.5f32, 3.0]).reshape([2, 1]);
    let loss_with = |loss: RegressionLoss, delta: f64| {
        let config = RegressionConfig { loss, huber_delta: delta, ..RegressionConfig::new("v") };
        let (_vs, head) = build(&config, 1, &state);
        head.loss(&out, &target).unwrap().double_value(&[])
    };
    assert!(close(loss_with(RegressionLoss::Mse, 1.0), (0.25 + 9.0) / 2.0));
    assert!(close(loss_with(RegressionLoss::L1, 1.0), 3.5 / 2.0));
    // Huber, delta 1: 0.5 * 0.5^2 and 1 * (3 - 0.5).
    assert!(close(loss_with(RegressionLoss::Huber, 1.0), (0.125 + 2.5) / 2.0));
    assert!(close(loss_with(RegressionLoss::Huber, 4.0), (0.125 + 4.5) / 2.0));
}

/// Bounds clip the predictions (state `"bounds": "clip"`, what `fit` makes
/// now); a state without it is a run of the sigmoid form, which still
/// squashes exactly as it was trained.
#[test]
fn bounds_clip_predictions_and_old_states_still_squash() {
    let config = RegressionConfig { bounds: Some([0.0, 1.0]), hidden: vec![4], ..RegressionConfig::new("v") };
    let state = config.fit(&[Some("0.1"), Some("0.9"), Some("1")]).unwrap();
    assert_eq!(state["bounds"], "clip");
    let mut old = state.clone();
    old.as_object_mut().unwrap().remove("bounds");
    for state in [&state, &old] {
        let (vs, head) = build(&config, 3, state);
        for bias in [-1e3, -3.0, 0.0, 3.0, 1e3] {
            constant_output(&vs, &[bias]);
            let out = head.forward(&(Tensor::randn([16, 3], CPU) * 100.0), false).unwrap();
            for p in head.decode(&out).unwrap() {
                let Prediction::Value { value, .. } = p else { panic!() };
                assert!((0.0..=1.0).contains(&value), "{value}");
            }
        }
    }
    let value = |state: &HeadState, bias: f64| {
        let (vs, head) = build(&config, 3, state);
        constant_output(&vs, &[bias]);
        let _ = tch::no_grad(|| vs.variables()["hidden0.weight"].shallow_clone().zero_());
        let out = head.forward(&Tensor::randn([1, 3], CPU), false).unwrap();
        match head.decode(&out).unwrap()[0] {
            Prediction::Value { value, .. } => value,
            ref p => panic!("{p:?}"),
        }
    };
    // Clipped: an output of z standardised units is mean + z · std, until a bound.
    let (mean, std) = (state["mean"].as_f64().unwrap(), state["std"].as_f64().unwrap());
    assert!(close(value(&state, 0.5), mean + 0.5 * std));
    assert_eq!(value(&state, 50.0), 1.0);
    assert_eq!(value(&state, -50.0), 0.0);
    // The old sigmoid form: sigmoid(0) = 1/2, the middle of the bounds.
    assert_eq!(value(&old, 0.0), 0.5);
    // Clipped predictions are counted in the scores.
    let (_vs, head) = build(&config, 3, &state);
    let v = |value: f64| Prediction::Value { value, std: None };
    let s = head.score(&[v(0.0), v(0.5), v(1.0)], &[Some("0.1"), Some("0.5"), Some("0.9")]).unwrap();
    assert_eq!(s.metrics.values.unwrap().clipped, Some(2));
    assert!(matches!(config.fit(&[Some("1.5")]), Err(Error::Label { index: 0, .. })));
    assert!(matches!(head.encode(&[Some("0.5"), Some("-0.1")]), Err(Error::Label { index: 1, .. })));
    let bad = RegressionConfig { bounds: Some([1.0, 1.0]), ..RegressionConfig::new("v") };
    assert!(bad.fit(&[Some("1")]).is_err());
}

/// Only a linear head with squared loss that does not squash is least squares.
#[test]
fn least_squares_heads_are_linear_mse_and_unsquashed() {
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    let clip = serde_json::json!({ "mean": 0.0, "std": 1.0, "bounds": "clip" });
    let linear = RegressionConfig::new("v");
    let bounded = RegressionConfig { bounds: Some([-5.0, 5.0]), ..RegressionConfig::new("v") };
    let cases: Vec<(RegressionConfig, &HeadState, bool)> = vec![
        (linear.clone(), &state, true),
        (bounded.clone(), &clip, true),
        (bounded, &state, false),
        (RegressionConfig { hidden: vec![3], ..linear.clone() }, &state, false),
        (RegressionConfig { loss: RegressionLoss::Huber, ..linear }, &state, false),
    ];
    for (config, state, exact) in cases {
        let (_vs, head) = build(&config, 3, state);
        assert_eq!(head.least_squares().is_some(), exact, "{config:?} with {state}");
    }
    let (_vs, head) = build(&ClassificationConfig::new("c"), 3, &classes(&["a", "b"]));
    assert!(head.least_squares().is_none());
}

#[test]
fn regression_score_with_and_without_tolerance() {
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    let v = |value: f64| Prediction::Value { value, std: None };
    let preds = [v(1.0), v(2.5), v(0.0), v(4.0)];
    let labels = [Some("1"), Some("2"), None, Some("3")];
    let (_vs, plain) = build(&RegressionConfig::new("v"), 1, &state);
    let s = plain.score(&preds, &labels).unwrap();
    assert_eq!(s.error_rate, None);
    assert_eq!(s.correct, [None, None, None, None]);
    let m = s.metrics.values.as_ref().expect("a value head's figures");
    assert!(close(m.mae.unwrap(), 0.5));
    assert!(close(m.rmse.unwrap(), (1.25f64 / 3.0).sqrt()));
    assert!(close(m.r2.unwrap(), 1.0 - 1.25 / 2.0));
    assert!(close(m.max_error.unwrap(), 1.0));
    assert_eq!(m.n, 3);

    let tol = RegressionConfig { tolerance: Some(0.5), ..RegressionConfig::new("v") };
    let (_vs, head) = build(&tol, 1, &state);
    let s = head.score(&preds, &labels).unwrap();
    assert_eq!(s.correct, [Some(true), Some(true), None, Some(false)]);
    assert!(close(s.error_rate.unwrap(), 1.0 / 3.0));
}

#[test]
fn the_same_state_rebuilds_the_same_head() {
    type Case<'a> = (Box<dyn HeadConfig>, Vec<Option<&'a str>>);
    let configs: Vec<Case> = vec![
        (
            Box::new(ClassificationConfig { hidden: vec![3], ..ClassificationConfig::new("c") }),
            vec![Some("x"), Some("y"), None, Some("z")],
        ),
        (
            Box::new(RegressionConfig { bounds: Some([-1.0, 10.0]), ..RegressionConfig::new("r") }),
            vec![Some("1"), Some("7.5"), None, Some("2")],
        ),
    ];
    let x = Tensor::randn([5, 4], CPU);
    for (config, labels) in &configs {
        let state = config.fit(labels).unwrap();
        let stored: HeadState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        let (vs1, h1) = build(config.as_ref(), 4, &state);
        let (mut vs2, h2) = build(config.as_ref(), 4, &stored);
        vs2.copy(&vs1).unwrap();
        assert_eq!(
            h1.decode(&h1.forward(&x, false).unwrap()).unwrap(),
            h2.decode(&h2.forward(&x, false).unwrap()).unwrap()
        );
        assert_eq!(
            h1.encode(labels).unwrap().values.to_kind(Kind::Double),
            h2.encode(labels).unwrap().values.to_kind(Kind::Double)
        );
    }
}

#[test]
fn configs_come_from_toml_by_type() {
    #[derive(serde::Deserialize)]
    struct File {
        heads: Vec<Box<dyn HeadConfig>>,
    }
    let text = r#"
        [[heads]]
        type = "classification"
        name = "morphology"
        class_weights = { a = 2.0 }
        label_smoothing = 0.1

        [[heads]]
        type = "regression"
        name = "fraction"
        column = "vf"
        weight = 0.5
        loss = "huber"
        bounds = [0.0, 1.0]
    "#;
    let file: File = toml::from_str(text).unwrap();
    assert_eq!(file.heads[0].name(), "morphology");
    assert_eq!(file.heads[0].column(), "morphology");
    assert!(file.heads[0].stratify());
    assert_eq!(file.heads[1].column(), "vf");
    assert_eq!(file.heads[1].loss_weight(), 0.5);
    assert!(!file.heads[1].stratify());

    let unknown = "[[heads]]\ntype = \"regression\"\nname = \"f\"\nbound = [0, 1]\n";
    let e = toml::from_str::<File>(unknown).err().unwrap().to_string();
    assert!(e.contains("bound"), "{e}");
    let bad_loss = "[[heads]]\ntype = \"regression\"\nname = \"f\"\nloss = \"l3\"\n";
    assert!(toml::from_str::<File>(bad_loss).is_err());
}

/// The message of parsing `text` as a file of `[[heads]]`.
fn heads_error(text: &str) -> String {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        heads: Vec<Box<dyn HeadConfig>>,
    }
    toml::from_str::<File>(text).expect_err(text).to_string()
}

/// typetag reads a head's table through erased-serde, so toml names the line
/// of the table's `[[heads]]` header (not of the key itself); for the second
/// head, its own header.
#[test]
fn unknown_keys_of_each_built_in_head_are_errors_at_their_table_line() {
    for kind in ["classification", "regression"] {
        // A misspelt common key, and one that only the other head has.
        let other = if kind == "regression" { "label_smoothing" } else { "huber_delta" };
        for key in ["colum", other] {
            let text = format!(
                "[[heads]]\ntype = \"classification\"\nname = \"first\"\n\n\
                 [[heads]]\ntype = \"{kind}\"\nname = \"h\"\nweight = 2.0\n{key} = 1.0\n"
            );
            let e = heads_error(&text);
            assert!(e.contains("line 5") && e.contains(&format!("unknown field `{key}`")), "{kind}: {e}");
        }
    }
}

#[test]
fn common_fields_read_alike_and_new_matches_the_toml_defaults() {
    let classification = ClassificationConfig::new("h");
    let regression = RegressionConfig::new("h");
    assert_eq!(toml::from_str::<ClassificationConfig>("name = \"h\"").unwrap(), classification);
    assert_eq!(toml::from_str::<RegressionConfig>("name = \"h\"").unwrap(), regression);
    assert!(
        regression.standardise && regression.huber_delta == 1.0 && regression.loss == RegressionLoss::Mse
    );
    let common =
        "name = \"h\"\ncolumn = \"c\"\nweight = 0.5\nhidden = [4, 2]\ndropout = 0.25\ntaps = [\"head\"]\n";
    let c: ClassificationConfig = toml::from_str(common).unwrap();
    let r: RegressionConfig = toml::from_str(common).unwrap();
    assert_eq!(
        (&c.name, &c.column, c.weight, &c.hidden, c.dropout, &c.taps),
        (&r.name, &r.column, r.weight, &r.hidden, r.dropout, &r.taps)
    );
    assert_eq!((c.column(), HeadConfig::loss_weight(&c), r.column()), ("c", 0.5, "c"));
    assert!(c.taps().is_some() && r.taps().is_some() && classification.taps().is_none());
    assert_eq!(regression.column(), "h");
    // Serialised and read back, a config is the same (defaults left out or spelled out alike).
    let again: ClassificationConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
    // The network of the common fields: `hidden` layers, then the output.
    let vs = nn::VarStore::new(Device::Cpu);
    let mlp = c.mlp(&vs.root(), 3, 5).unwrap();
    assert_eq!(
        mlp.forward_t(&Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), false).unwrap().size(),
        [2, 5]
    );
    let e =
        RegressionConfig { dropout: 1.0, ..RegressionConfig::new("d") }.mlp(&vs.root(), 3, 1).unwrap_err();
    assert!(e.to_string().contains("head `d`") && e.to_string().contains("dropout"), "{e}");
}

/// The names typetag lists for an unknown tag (its registry is private; its
/// error message names every registered tag).
fn typetag_list<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let probe = serde_json::json!({ "type": "\u{0}furcate-probe" });
    let Err(e) = serde_json::from_value::<T>(probe) else { return Vec::new() };
    let msg = e.to_string();
    let mut names: Vec<String> = msg
        .split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).map(str::to_string).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn registered_type_names_are_exactly_typetags() {
    use furcate_core::registry;
    let heads = registry::head_types();
    assert!(heads.contains(&"classification".to_string()) && heads.contains(&"regression".to_string()));
    assert_eq!(heads, typetag_list::<Box<dyn furcate_core::head::HeadConfig>>());
    assert_eq!(
        registry::extractor_types(),
        typetag_list::<Box<dyn furcate_core::extractor::ExtractorConfig>>()
    );
    assert!(heads.iter().all(|h| registry::typetag_knows_head(h)));
    assert!(registry::extractor_types().iter().all(|e| registry::typetag_knows_extractor(e)));
    assert!(!registry::typetag_knows_head("no-such-head"));
}

/// Features of the wrong width, an output of the wrong shape or targets that
/// do not fit are errors naming the head, not panics of libtorch.
#[test]
fn bad_shapes_are_errors_naming_the_head() {
    let class = ClassificationConfig { hidden: vec![3], ..ClassificationConfig::new("phase") };
    let (_vs, head) = build(&class, 4, &classes(&["a", "b"]));
    let e = head.forward(&Tensor::randn([2, 5], CPU), false).unwrap_err().to_string();
    assert!(e.contains("head `phase`") && e.contains("forward"), "{e}");
    let out = head.forward(&Tensor::randn([2, 4], CPU), false).unwrap();
    let e = head.loss(&out, &Tensor::from_slice(&[0i64, 1, 1])).unwrap_err().to_string();
    assert!(e.contains("head `phase`") && e.contains("loss"), "{e}");
    let e = head.decode(&Tensor::randn([2, 3], CPU)).unwrap_err().to_string();
    assert!(e.contains("head `phase`") && e.contains("[2, 3]"), "{e}");
    assert!(head.probabilities(&Tensor::randn([2, 3], CPU)).is_err());

    let (_vs, head) =
        build(&RegressionConfig::new("fraction"), 4, &serde_json::json!({ "mean": 0.0, "std": 1.0 }));
    let e = head.forward(&Tensor::randn([2, 3], CPU), false).unwrap_err().to_string();
    assert!(e.contains("head `fraction`") && e.contains("forward"), "{e}");
    let out = head.forward(&Tensor::randn([2, 4], CPU), false).unwrap();
    let e = head.loss(&out, &Tensor::zeros([3, 1], CPU)).unwrap_err().to_string();
    assert!(e.contains("head `fraction`") && e.contains("loss"), "{e}");
    assert!(head.decode(&Tensor::randn([2, 2], CPU)).unwrap_err().to_string().contains("head `fraction`"));
    // The default masked loss takes a mask that does not fit as an error too.
    let targets = furcate_core::head::Targets {
        values: Tensor::zeros([2, 1], CPU),
        mask: Tensor::from_slice(&[true, false, true]),
    };
    assert!(head.masked_loss(&out, &targets).is_err());
}

/// `[[heads]]` read as `RunConfig` reads them, with no plugin loaded: built-in
/// types through typetag (the `type` first or not), any other kept as its raw
/// table until a plugin makes it; such a head refuses `fit` and `build`,
/// naming itself and its type.
#[test]
fn heads_of_other_types_are_kept_raw_until_a_plugin_makes_them() {
    use furcate_core::plugin::host::pending_table;
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(deserialize_with = "furcate_core::plugin::deserialize_heads")]
        heads: Vec<Box<dyn HeadConfig>>,
    }
    let text = "[[heads]]\ntype = \"classification\"\nname = \"a\"\n\n[[heads]]\nname = \"b\"\ntype = \
                \"focal\"\ngamma = 2.0\n\n[[heads]]\nname = \"c\"\ntype = \"regression\"\nweight = 0.5\n";
    let file: File = toml::from_str(text).unwrap();
    let names: Vec<(&str, &str)> = file.heads.iter().map(|h| (h.name(), h.typetag_name())).collect();
    assert_eq!(names, [("a", "classification"), ("b", "focal"), ("c", "regression")]);
    assert_eq!(file.heads[2].loss_weight(), 0.5);
    let e = file.heads[1].fit(&[Some("x")]).unwrap_err().to_string();
    assert!(e.contains("head `b`") && e.contains("`focal`"), "{e}");
    let table = pending_table(file.heads[1].as_ref()).unwrap().expect("a raw table");
    assert_eq!(table["type"].as_str(), Some("focal"));
    assert_eq!(table["gamma"].as_float(), Some(2.0));
    assert!(pending_table(file.heads[0].as_ref()).unwrap().is_none());
    assert!(pending_table(file.heads[2].as_ref()).unwrap().is_none());

    // Unknown keys of a built-in head are refused either way; with `type`
    // first, the error is typetag's own, line included.
    #[derive(Debug, serde::Deserialize)]
    struct Plain {
        #[allow(dead_code)]
        heads: Vec<Box<dyn HeadConfig>>,
    }
    let typo = "\n[[heads]]\ntype = \"regression\"\nname = \"f\"\nbound = 1\n";
    let e = toml::from_str::<File>(typo).err().unwrap().to_string();
    assert!(e.contains("bound") && e.contains("line 2"), "{e}");
    assert_eq!(e, toml::from_str::<Plain>(typo).unwrap_err().to_string());
    let typo = "[[heads]]\nname = \"f\"\ntype = \"regression\"\nbound = 1\n";
    let e = toml::from_str::<File>(typo).err().unwrap().to_string();
    assert!(e.contains("bound"), "{e}");
    let e = toml::from_str::<File>("[[heads]]\nname = \"f\"\n").err().unwrap().to_string();
    assert!(e.contains("type"), "{e}");
}
