//! Learned uncertainty loss weighting (Kendall, Gal and Cipolla 2018): the
//! objective, its gradient, what training learns, and that the weights are
//! ordinary model variables (trained, checkpointed, restored).

use furcate_core::config::{LoadedConfig, LossWeighting};
use furcate_core::progress::Silent;
use furcate_core::run::build_model;
use furcate_core::train::{train, Batch, NoCheckpoints};
use tch::{Device, Kind, Tensor};

use crate::common::{encode_rows, fit_states};

/// Two regression heads on the same features: `clean` is a function of the
/// features, `noisy` is that function plus unit noise it cannot learn.
const CONFIG: &str = r#"
[data]
manifest = "unused.csv"
[extractor]
type = "efficientnet_lite0"
[[heads]]
type = "regression"
name = "clean"
[[heads]]
type = "regression"
name = "noisy"
weight = 2.0
[training]
loss_weighting = "uncertainty"
learning_rate = 0.05
epochs = 300
"#;

fn labels(t: &Tensor) -> Vec<String> {
    Vec::<f32>::try_from(t).unwrap().iter().map(|v| v.to_string()).collect()
}

#[test]
fn the_objective_and_its_gradient_follow_the_formula() {
    let cfg = LoadedConfig::from_str(CONFIG, std::path::Path::new("w.toml")).unwrap();
    assert_eq!(cfg.config.training.loss_weighting, LossWeighting::Uncertainty);
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    let (vs, model, _) = build_model(&cfg.config, &[state.clone(), state], 3, Device::Cpu).unwrap();
    let mut log_var = vs.variables()["loss_weighting.log_var"].shallow_clone();
    tch::no_grad(|| log_var.copy_(&Tensor::from_slice(&[0.5f32, -1.0])));
    let losses =
        [Tensor::from(3.0f32).set_requires_grad(true), Tensor::from(0.25f32).set_requires_grad(true)];
    let total = model.total_loss(&losses);
    // Σ w_i (exp(-s_i) L_i + s_i / 2) with w = (1, 2), s = (0.5, -1), L = (3, 0.25).
    let expect = ((-0.5f64).exp() * 3.0 + 0.25) + 2.0 * (1f64.exp() * 0.25 - 0.5);
    assert!((total.double_value(&[]) - expect).abs() < 1e-5, "{} vs {expect}", total.double_value(&[]));
    total.backward();
    // d/ds_i = w_i (1/2 - exp(-s_i) L_i); d/dL_i = w_i exp(-s_i).
    let g = Vec::<f32>::try_from(log_var.grad()).unwrap();
    assert!((g[0] as f64 - (0.5 - (-0.5f64).exp() * 3.0)).abs() < 1e-5, "{g:?}");
    assert!((g[1] as f64 - 2.0 * (0.5 - 1f64.exp() * 0.25)).abs() < 1e-5, "{g:?}");
    assert!((losses[1].grad().double_value(&[]) - 2.0 * 1f64.exp()).abs() < 1e-4);
    let w = model.effective_weights();
    assert!((w[0] - (-0.5f64).exp()).abs() < 1e-6 && (w[1] - 2.0 * 1f64.exp()).abs() < 1e-5, "{w:?}");
}

#[test]
fn training_down_weights_the_head_whose_loss_stays_high() {
    let cfg = LoadedConfig::from_str(CONFIG, std::path::Path::new("w.toml")).unwrap();
    tch::manual_seed(0);
    let x = Tensor::randn([400, 3], (Kind::Float, Device::Cpu));
    let clean = x.select(1, 0) * 0.5 + x.select(1, 1) * 0.25;
    let noisy = &clean + Tensor::randn([400], (Kind::Float, Device::Cpu));
    let cols = [labels(&clean), labels(&noisy)];
    let states = fit_states(&cfg.config, &cols);
    let (vs, model, _) = build_model(&cfg.config, &states, 3, Device::Cpu).unwrap();
    let targets = encode_rows(&model, &cols, 0..400);
    assert_eq!(model.effective_weights(), vec![1.0, 2.0], "s starts at 0: the configured weights");
    let batch = Batch { features: x, targets };
    train(&model, &vs, &batch, None, &cfg.config.training, &mut NoCheckpoints, &mut Silent).unwrap();
    let w = model.effective_weights();
    let per_unit = [w[0] / 1.0, w[1] / 2.0];
    // The clean head's loss falls towards 0, the noisy one's stays near its
    // noise variance: the learned weight of the clean head grows past the noisy one's.
    assert!(per_unit[0] > 3.0 * per_unit[1], "learned weights {w:?}");
    assert!(per_unit[1] < 1.0 && per_unit[0] > 1.0, "learned weights {w:?}");
    // The weights are model variables: a checkpoint of the store holds them.
    assert!(vs.variables()["loss_weighting.log_var"].requires_grad());
}

#[test]
fn fixed_weighting_adds_no_variable() {
    let text = CONFIG.replace("loss_weighting = \"uncertainty\"", "loss_weighting = \"fixed\"");
    let cfg = LoadedConfig::from_str(&text, std::path::Path::new("w.toml")).unwrap();
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    let (vs, model, _) = build_model(&cfg.config, &[state.clone(), state], 3, Device::Cpu).unwrap();
    assert!(!vs.variables().keys().any(|k| k.starts_with("loss_weighting")));
    assert_eq!(model.effective_weights(), vec![1.0, 2.0]);
    let bad = CONFIG.replace("\"uncertainty\"", "\"learned\"");
    let err = LoadedConfig::from_str(&bad, std::path::Path::new("w.toml")).unwrap_err().to_string();
    assert!(err.contains("w.toml") && err.contains("learned") && err.contains("uncertainty"), "{err}");
}
