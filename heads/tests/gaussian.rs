//! The `gaussian` head: scaling, shapes, the NLL against a hand computation
//! and its gradient, constant targets, scores, and calibration end to end.

use furcate_core::{Error, HeadConfig, Prediction};
use furcate_heads::gaussian::{gaussian_nll, GaussianConfig, Z90};
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

use crate::common::{build, CPU};

#[test]
fn fit_standardises_like_the_regression_head() {
    let config = GaussianConfig::new("fraction");
    let state = config.fit(&[Some("0.1"), None, Some("0.3")]).unwrap();
    assert!((state["mean"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    assert!((state["std"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!(matches!(config.fit(&[Some("x")]), Err(Error::Label { index: 0, .. })));
    assert!(config.fit(&[None]).is_err());
    assert!(!config.stratify());
}

#[test]
fn shapes_encode_and_decode_in_data_units() {
    let config = GaussianConfig { hidden: vec![4], ..GaussianConfig::new("fraction") };
    let (_vs, head) = build(&config, 3, &serde_json::json!({ "mean": 0.5, "std": 0.1 }));
    let out = head.forward(&Tensor::randn([5, 3], CPU), false).unwrap();
    assert_eq!(out.size(), [5, 2]);
    let t = head.encode(&[Some("0.7"), None, Some("0.4")]).unwrap();
    assert_eq!(t.values.size(), [3, 1]);
    let v = Vec::<f32>::try_from(&t.values.reshape([-1])).unwrap();
    assert!((v[0] - 2.0).abs() < 1e-5 && v[1] == 0.0 && (v[2] + 1.0).abs() < 1e-5, "{v:?}");
    assert_eq!(Vec::<bool>::try_from(&t.mask).unwrap(), [true, false, true]);
    assert!(matches!(head.encode(&[Some("inf")]), Err(Error::Label { index: 0, .. })));

    // μ = 1, s = ln 4 in learned units: value 0.5 + 0.1, std 2 · 0.1.
    let p = head.decode(&Tensor::from_slice(&[1.0, 4f64.ln()]).view([1, 2])).unwrap();
    let [Prediction::Value { value, std: Some(std) }] = p[..] else { panic!("{p:?}") };
    assert!((value - 0.6).abs() < 1e-12 && (std - 0.2).abs() < 1e-12);
}

#[test]
fn nll_matches_a_hand_computation() {
    let output = Tensor::from_slice(&[0.0, 0.0, 1.0, 4f64.ln()]).view([2, 2]);
    let target = Tensor::from_slice(&[1.0, 3.0]).view([2, 1]);
    // ½(0 + 1) and ½(ln 4 + 4 / 4), averaged.
    let expected = (0.5 + 0.5 * (4f64.ln() + 1.0)) / 2.0;
    assert!((gaussian_nll(&output, &target).unwrap().double_value(&[]) - expected).abs() < 1e-12);
    let (_vs, head) = build(&GaussianConfig::new("v"), 1, &serde_json::json!({ "mean": 0.0, "std": 1.0 }));
    assert!((head.loss(&output, &target).unwrap().double_value(&[]) - expected).abs() < 1e-12);
}

#[test]
fn nll_gradient_matches_the_analytic_one() {
    let mu = Tensor::from_slice(&[0.3, -1.2, 2.0]);
    let s = Tensor::from_slice(&[0.5, -0.7, 1.1]);
    let y = Tensor::from_slice(&[1.0, -1.0, 0.5]);
    let output = Tensor::stack(&[&mu, &s], 1).set_requires_grad(true);
    gaussian_nll(&output, &y).unwrap().backward();
    let grad = output.grad();
    let m = 3.0;
    let d_mu = (&mu - &y) * (-&s).exp() / m;
    let d_s = (1.0 - (&y - &mu).square() * (-&s).exp()) * 0.5 / m;
    let expected = Tensor::stack(&[d_mu, d_s], 1);
    assert!(grad.allclose(&expected, 1e-9, 1e-12, false), "{grad} vs {expected}");
    // Where the variance equals the squared error (s = 0, |y - μ| = 1) the s-gradient vanishes.
    let at = Tensor::from_slice(&[0.0, 0.0]).view([1, 2]).set_requires_grad(true);
    gaussian_nll(&at, &Tensor::from_slice(&[1.0])).unwrap().backward();
    assert!(at.grad().double_value(&[0, 1]).abs() < 1e-12);
}

#[test]
fn constant_targets_train_and_score_without_nan() {
    let config = GaussianConfig::new("c");
    let labels = [Some("0.25"); 4];
    let state = config.fit(&labels).unwrap();
    assert_eq!(state, serde_json::json!({ "mean": 0.25, "std": 1.0 }));
    let (_vs, head) = build(&config, 2, &state);
    let out = head.forward(&Tensor::randn([4, 2], CPU), true).unwrap();
    let targets = head.encode(&labels).unwrap();
    assert_eq!(Vec::<f32>::try_from(&targets.values.reshape([-1])).unwrap(), [0.0; 4]);
    assert!(head.masked_loss(&out, &targets).unwrap().double_value(&[]).is_finite());
    let score = head.score(&head.decode(&out).unwrap(), &labels).unwrap();
    assert!(score.metrics.values.as_ref().unwrap().r2.is_none());
    assert!(score.metrics.mae().unwrap().is_finite());
}

#[test]
fn score_reports_coverage_and_interval_width() {
    let (_vs, head) = build(&GaussianConfig::new("v"), 1, &serde_json::json!({ "mean": 0.0, "std": 1.0 }));
    let p = |value: f64, std: f64| Prediction::Value { value, std: Some(std) };
    let predictions = [p(0.0, 1.0), p(0.0, 1.0), p(1.0, 2.0), p(5.0, 1.0)];
    let truth = [Some("0.5"), Some("2.0"), Some("4.0"), None];
    let score = head.score(&predictions, &truth).unwrap();
    // |z| = 0.5, 2.0, 1.5: two of three inside ±1.645.
    assert!((score.metrics.interval.as_ref().unwrap().coverage_90.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    let width = score.metrics.interval.as_ref().unwrap().mean_interval_width_90.unwrap();
    assert!((width - 2.0 * Z90 * 4.0 / 3.0).abs() < 1e-12);
    assert!((score.metrics.mae().unwrap() - 5.5 / 3.0).abs() < 1e-12);
    assert_eq!(score.metrics.values.as_ref().unwrap().n, 3);
    assert_eq!(score.error_rate, None);
    assert_eq!(score.correct.len(), 4);
    let no_std = [Prediction::Value { value: 0.0, std: None }];
    assert!(head.score(&no_std, &[Some("1")]).is_err());
}

/// `n` points `x ~ U(-1, 1)`, `y = 0.3 + 0.5 x + N(0, 0.1²)`; features `[n, 1]` and labels.
fn noisy_line(n: i64) -> (Tensor, Vec<String>) {
    let x = Tensor::rand([n, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let y = &x * 0.5 + 0.3 + Tensor::randn([n, 1], (Kind::Float, Device::Cpu)) * 0.1;
    let labels = Vec::<f64>::try_from(&y.reshape([-1]).to_kind(Kind::Double)).unwrap();
    (x, labels.iter().map(|v| format!("{v}")).collect())
}

#[test]
fn ninety_percent_intervals_cover_about_ninety_percent() {
    tch::manual_seed(7);
    let (x_train, train) = noisy_line(2000);
    let (x_test, test) = noisy_line(2000);
    let train: Vec<Option<&str>> = train.iter().map(|s| Some(s.as_str())).collect();
    let test: Vec<Option<&str>> = test.iter().map(|s| Some(s.as_str())).collect();

    let config = GaussianConfig::new("y");
    let state = config.fit(&train).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let head = config.build(vs.root(), 1, &state).unwrap();
    let targets = head.encode(&train).unwrap();
    let mut opt = nn::Adam::default().build(&vs, 0.05).unwrap();
    for _ in 0..400 {
        let loss = head.masked_loss(&head.forward(&x_train, true).unwrap(), &targets).unwrap();
        opt.backward_step(&loss);
    }
    let predictions = head.decode(&head.forward(&x_test, false).unwrap()).unwrap();
    let score = head.score(&predictions, &test).unwrap();
    let coverage = score.metrics.interval.as_ref().unwrap().coverage_90.unwrap();
    assert!((0.85..=0.95).contains(&coverage), "coverage {coverage}");
    // The predicted std is close to the true noise, 0.1.
    let width = score.metrics.interval.as_ref().unwrap().mean_interval_width_90.unwrap();
    assert!((width / (2.0 * Z90) - 0.1).abs() < 0.02, "width {width}");
    assert!(score.metrics.values.as_ref().unwrap().r2.unwrap() > 0.85);
}

#[test]
fn is_registered_and_parses_from_toml() {
    assert!(furcate_core::registry::head_types().contains(&"gaussian".to_string()));
    let config: Box<dyn HeadConfig> =
        toml::from_str("type = \"gaussian\"\nname = \"f\"\ncolumn = \"fraction\"").unwrap();
    assert_eq!((config.name(), config.column()), ("f", "fraction"));
    assert!(
        toml::from_str::<Box<dyn HeadConfig>>("type = \"gaussian\"\nname = \"f\"\nloss = \"mse\"").is_err()
    );
}

/// Wrong shapes are errors naming the head, not panics of libtorch.
#[test]
fn bad_shapes_are_errors_naming_the_head() {
    let (_vs, head) =
        build(&GaussianConfig::new("fraction"), 3, &serde_json::json!({ "mean": 0.5, "std": 0.1 }));
    let e = head.forward(&Tensor::randn([2, 4], CPU), false).unwrap_err().to_string();
    assert!(e.contains("head `fraction`") && e.contains("forward"), "{e}");
    let e = head.loss(&Tensor::randn([2, 3], CPU), &Tensor::zeros([2], CPU)).unwrap_err().to_string();
    assert!(e.contains("head `fraction`") && e.contains("loss"), "{e}");
    assert!(gaussian_nll(&Tensor::randn([2, 2], CPU), &Tensor::zeros([3], CPU)).is_err());
    assert!(head.decode(&Tensor::randn([2, 3], CPU)).unwrap_err().to_string().contains("head `fraction`"));
}

/// (The unknown key inside a `[[heads]]` file: `ordinal.rs`, for both heads of the crate.)
#[test]
fn an_unknown_key_names_its_line_and_new_matches_the_toml_defaults() {
    let e = toml::from_str::<GaussianConfig>("name = \"f\"\ndropuot = 0.1").unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("dropuot"), "{e}");
    let config = GaussianConfig::new("f");
    assert_eq!(toml::from_str::<GaussianConfig>("name = \"f\"").unwrap(), config);
    assert!(config.standardise);
}
