//! The multi-head model: variable layout, config errors, property tests
//! that the per-head losses stay decoupled (issue 4), heads that read their
//! own taps, and the choice of taps by validation.

use std::collections::BTreeMap;

use furcate_core::config::LoadedConfig;
use furcate_core::data::Dataset;
use furcate_core::extractor::taps::TapLayout;
use furcate_core::head::classification::ClassificationConfig;
use furcate_core::head::regression::{RegressionConfig, RegressionLoss};
use furcate_core::model::{Activation, MultiHeadModel, Routes, TrunkConfig};
use furcate_core::progress::Silent;
use furcate_core::run::choose::{choose, Problem};
use furcate_core::{HeadConfig, HeadState, Targets};
use proptest::collection::vec;
use proptest::prelude::*;
use tch::nn::{Module, OptimizerConfig};
use tch::{nn, Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Double, Device::Cpu);

/// One head of a random model.
#[derive(Debug, Clone)]
struct HeadSpec {
    /// `Some(k)`: classification with k classes; `None`: regression.
    classes: Option<usize>,
    weight: f64,
    hidden: Option<i64>,
    smoothing: f64,
    class_weighted: bool,
    loss: RegressionLoss,
    bounded: bool,
}

/// A random model, batch and labels.
#[derive(Debug, Clone)]
struct Case {
    heads: Vec<HeadSpec>,
    n: usize,
    d: i64,
    features: Vec<f64>,
    /// Per head, per sample: a value in [0, 1) (class `floor(u * k)`), or missing.
    labels: Vec<Vec<Option<f64>>>,
    /// Per head, per sample: other values in [0, 1).
    other: Vec<Vec<f64>>,
    /// Which head the property changes.
    pick: usize,
    seed: i64,
}

prop_compose! {
    fn head_spec()(
        classes in prop::option::of(1usize..5),
        weight in 0.1f64..3.0,
        hidden in prop::option::of(1i64..4),
        smoothing in prop_oneof![Just(0.0), 0.0f64..0.5],
        class_weighted in any::<bool>(),
        loss in prop_oneof![Just(RegressionLoss::Mse), Just(RegressionLoss::Huber), Just(RegressionLoss::L1)],
        bounded in any::<bool>(),
    ) -> HeadSpec {
        HeadSpec { classes, weight, hidden, smoothing, class_weighted, loss, bounded }
    }
}

prop_compose! {
    fn case()(heads in vec(head_spec(), 1..=4), n in 1usize..7, d in 1i64..5)(
        features in vec(-2.0f64..2.0, n * d as usize),
        labels in vec(vec(prop::option::weighted(0.75, 0.0f64..1.0), n), heads.len()),
        other in vec(vec(0.0f64..1.0, n), heads.len()),
        pick in 0..heads.len(),
        seed in 0i64..10_000,
        heads in Just(heads),
        n in Just(n),
        d in Just(d),
    ) -> Case {
        Case { heads, n, d, features, labels, other, pick, seed }
    }
}

fn label_text(spec: &HeadSpec, u: f64) -> String {
    match spec.classes {
        Some(k) => format!("c{}", class_of(u, k)),
        None => format!("{u}"),
    }
}

fn class_of(u: f64, k: usize) -> usize {
    ((u * k as f64) as usize).min(k - 1)
}

fn configs(case: &Case) -> Vec<(Box<dyn HeadConfig>, HeadState)> {
    case.heads
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = format!("h{i}");
            let hidden: Vec<i64> = s.hidden.into_iter().collect();
            match s.classes {
                Some(k) => {
                    let class_weights =
                        s.class_weighted.then(|| [("c0".to_string(), 2.5)].into_iter().collect());
                    let config = ClassificationConfig {
                        weight: s.weight,
                        hidden,
                        label_smoothing: s.smoothing,
                        class_weights,
                        ..ClassificationConfig::new(name)
                    };
                    let classes: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
                    (Box::new(config) as Box<dyn HeadConfig>, serde_json::json!({ "classes": classes }))
                }
                None => {
                    let config = RegressionConfig {
                        weight: s.weight,
                        hidden,
                        loss: s.loss,
                        bounds: s.bounded.then_some([-0.5, 1.5]),
                        ..RegressionConfig::new(name)
                    };
                    (Box::new(config) as Box<dyn HeadConfig>, serde_json::json!({ "mean": 0.4, "std": 0.3 }))
                }
            }
        })
        .collect()
}

/// The model in double precision, randomly initialised from the case's seed.
fn model(case: &Case, trunk: bool) -> (nn::VarStore, MultiHeadModel) {
    tch::manual_seed(case.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let trunk = trunk.then(|| TrunkConfig {
        hidden: vec![3, 2],
        activation: Activation::Tanh,
        dropout: 0.0,
        taps: None,
    });
    let m = MultiHeadModel::new(&vs.root(), case.d, trunk.as_ref(), &configs(case)).unwrap();
    vs.double();
    (vs, m)
}

fn features(case: &Case) -> Tensor {
    Tensor::from_slice(&case.features).reshape([case.n as i64, case.d])
}

fn encode(m: &MultiHeadModel, case: &Case, labels: &[Vec<Option<f64>>]) -> Vec<Targets> {
    m.heads()
        .iter()
        .zip(&case.heads)
        .zip(labels)
        .map(|((h, spec), cells)| {
            let text: Vec<Option<String>> = cells.iter().map(|u| u.map(|u| label_text(spec, u))).collect();
            let refs: Vec<Option<&str>> = text.iter().map(Option::as_deref).collect();
            h.encode(&refs).unwrap()
        })
        .collect()
}

fn losses(m: &MultiHeadModel, x: &Tensor, t: &[Targets]) -> Vec<Tensor> {
    m.losses(&m.forward(x, false).unwrap(), t).unwrap()
}

/// Gradient of `loss` on every variable (zero where it does not reach).
fn grads(vs: &nn::VarStore, loss: &Tensor) -> BTreeMap<String, Tensor> {
    let vars = vs.variables();
    for v in vars.values() {
        v.shallow_clone().zero_grad();
    }
    loss.backward();
    vars.into_iter()
        .map(|(name, v)| {
            let g = v.grad();
            (name, if g.defined() { g.copy() } else { v.zeros_like() })
        })
        .collect()
}

fn max_abs(t: &Tensor) -> f64 {
    if t.numel() == 0 {
        0.0
    } else {
        t.abs().max().double_value(&[])
    }
}

fn snapshot(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

fn in_head(var: &str, head: usize) -> bool {
    var.starts_with(&format!("heads.h{head}."))
}

/// Checks that weight_i * loss_i reaches no other head's parameters and that
/// on head i's own its gradient is the total's; returns Σ_i grad(weight_i * loss_i).
fn check_head_gradients(
    vs: &nn::VarStore,
    m: &MultiHeadModel,
    case: &Case,
) -> Result<BTreeMap<String, Tensor>, TestCaseError> {
    let x = features(case);
    let t = encode(m, case, &case.labels);
    let total = grads(vs, &m.total_loss(&losses(m, &x, &t)));
    let mut sum: BTreeMap<String, Tensor> = total.iter().map(|(k, v)| (k.clone(), v.zeros_like())).collect();
    for (i, w) in m.loss_weights().iter().enumerate() {
        let own = grads(vs, &(&losses(m, &x, &t)[i] * *w));
        for (var, g) in &own {
            if in_head(var, i) {
                let diff = max_abs(&(g - &total[var]));
                prop_assert!(diff <= 1e-12 * (1.0 + max_abs(g)), "{var}: {diff}");
            } else if var.starts_with("heads.") {
                prop_assert_eq!(max_abs(g), 0.0, "loss {} reaches {}", i, var);
            }
            *sum.get_mut(var).unwrap() += g;
        }
    }
    Ok(sum)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// (1) Without a trunk, loss i has no gradient on head j's parameters, and
    /// the total's gradient on head j is that of weight_j * loss_j.
    #[test]
    fn heads_without_trunk_are_decoupled(case in case()) {
        let (vs, m) = model(&case, false);
        let sum = check_head_gradients(&vs, &m, &case)?;
        prop_assert!(sum.keys().all(|var| var.starts_with("heads.")));
    }

    /// (2) With a trunk, the total's gradient on the trunk is the sum of each
    /// weighted head loss's gradient on it, and on head j that of weight_j * loss_j.
    #[test]
    fn trunk_gradient_is_the_sum_of_the_heads(case in case()) {
        let (vs, m) = model(&case, true);
        let sum = check_head_gradients(&vs, &m, &case)?;
        let x = features(&case);
        let t = encode(&m, &case, &case.labels);
        let total = grads(&vs, &m.total_loss(&losses(&m, &x, &t)));
        let mut trunk_vars = 0;
        for (var, g) in total.iter().filter(|(v, _)| v.starts_with("trunk.")) {
            trunk_vars += 1;
            let diff = max_abs(&(g - &sum[var]));
            prop_assert!(diff <= 1e-10 * (1.0 + max_abs(g)), "{var}: {diff}");
        }
        prop_assert_eq!(trunk_vars, 4);
    }

    /// (3) A frozen extractor in its own store gets no gradient and does not
    /// change while the model trains on its features.
    #[test]
    fn frozen_extractor_is_untouched_by_training(case in case(), trunk in any::<bool>()) {
        tch::manual_seed(case.seed + 1);
        let mut ext_vs = nn::VarStore::new(Device::Cpu);
        let extractor = nn::linear(ext_vs.root() / "fc", 5, case.d, Default::default());
        ext_vs.double();
        ext_vs.freeze();
        let before_ext = snapshot(&ext_vs);
        let images = Tensor::randn([case.n as i64, 5], CPU);
        let features = extractor.forward(&images);
        prop_assert!(!features.requires_grad());

        let (vs, m) = model(&case, trunk);
        prop_assert!(vs.variables().keys().all(|k| k.starts_with("heads.") || k.starts_with("trunk.")));
        let before = snapshot(&vs);
        let t = encode(&m, &case, &case.labels);
        let mut opt = nn::Adam::default().build(&vs, 0.05).unwrap();
        for _ in 0..3 {
            let out = m.forward(&features, true).unwrap();
            opt.backward_step(&m.total_loss(&m.losses(&out, &t).unwrap()));
        }
        for (name, v) in ext_vs.variables() {
            prop_assert!(!v.grad().defined(), "{name} has a gradient");
            prop_assert_eq!(max_abs(&(&v - &before_ext[&name])), 0.0, "{} changed", name);
        }
        // A one-class head's loss is constantly 0, so only the others can move.
        let labelled = case
            .heads
            .iter()
            .zip(&case.labels)
            .any(|(h, cells)| h.classes != Some(1) && cells.iter().any(Option::is_some));
        let moved = vs.variables().iter().any(|(n, v)| max_abs(&(v - &before[n])) > 0.0);
        prop_assert_eq!(moved, labelled, "the model trains exactly when it has labels");
    }

    /// (4) Without a trunk, changing head j's targets changes neither another
    /// head's loss nor its parameters after an Adam step.
    #[test]
    fn changing_one_heads_targets_leaves_the_others_alone(case in case()) {
        let (vs_a, m_a) = model(&case, false);
        let (mut vs_b, m_b) = model(&case, false);
        vs_b.copy(&vs_a).unwrap();
        let x = features(&case);
        let j = case.pick;
        let mut changed = case.labels.clone();
        changed[j] = case.other[j].iter().map(|u| Some(*u)).collect();
        let t_a = encode(&m_a, &case, &case.labels);
        let t_b = encode(&m_b, &case, &changed);
        let l_a = losses(&m_a, &x, &t_a);
        let l_b = losses(&m_b, &x, &t_b);
        for i in (0..case.heads.len()).filter(|i| *i != j) {
            prop_assert_eq!(l_a[i].double_value(&[]), l_b[i].double_value(&[]), "loss of head {}", i);
        }
        for (vs, m, t) in [(&vs_a, &m_a, &t_a), (&vs_b, &m_b, &t_b)] {
            let mut opt = nn::Adam::default().build(vs, 0.05).unwrap();
            opt.backward_step(&m.total_loss(&losses(m, &x, t)));
        }
        let b = vs_b.variables();
        for (var, a) in vs_a.variables() {
            if !in_head(&var, j) {
                prop_assert_eq!(max_abs(&(&a - &b[&var])), 0.0, "{} differs", var);
            }
        }
    }

    /// (5) What a masked-out row holds changes no loss and no gradient, and a
    /// head with every row masked has zero loss and zero gradient.
    #[test]
    fn masked_labels_contribute_nothing(case in case(), trunk in any::<bool>()) {
        let (vs, m) = model(&case, trunk);
        let x = features(&case);
        let t = encode(&m, &case, &case.labels);
        let scrambled: Vec<Targets> = t
            .iter()
            .zip(&case.heads)
            .zip(&case.other)
            .map(|((t, spec), other)| {
                let noise = match spec.classes {
                    Some(k) => {
                        let idx: Vec<i64> = other.iter().map(|u| class_of(*u, k) as i64).collect();
                        Tensor::from_slice(&idx)
                    }
                    None => (Tensor::from_slice(other) * 10.0 - 5.0).to_kind(Kind::Float).reshape([-1, 1]),
                };
                let keep = if spec.classes.is_some() { t.mask.shallow_clone() } else { t.mask.reshape([-1, 1]) };
                Targets { values: t.values.where_self(&keep, &noise), mask: t.mask.shallow_clone() }
            })
            .collect();
        let plain = losses(&m, &x, &t);
        let noisy = losses(&m, &x, &scrambled);
        for (a, b) in plain.iter().zip(&noisy) {
            prop_assert_eq!(a.double_value(&[]), b.double_value(&[]));
        }
        let g_plain = grads(&vs, &m.total_loss(&losses(&m, &x, &t)));
        let g_noisy = grads(&vs, &m.total_loss(&losses(&m, &x, &scrambled)));
        for (var, g) in &g_plain {
            prop_assert_eq!(max_abs(&(g - &g_noisy[var])), 0.0, "{}", var);
        }

        let j = case.pick;
        let mut hidden = encode(&m, &case, &case.other.iter().map(|o| o.iter().map(|u| Some(*u)).collect()).collect::<Vec<_>>());
        hidden[j].mask = hidden[j].mask.zeros_like();
        let loss_j = losses(&m, &x, &hidden)[j].shallow_clone();
        prop_assert_eq!(loss_j.double_value(&[]), 0.0);
        for (var, g) in grads(&vs, &loss_j) {
            prop_assert_eq!(max_abs(&g), 0.0, "{}", var);
        }
    }
}

fn two_heads() -> Vec<(Box<dyn HeadConfig>, HeadState)> {
    vec![
        (
            Box::new(ClassificationConfig {
                hidden: vec![4],
                weight: 2.0,
                ..ClassificationConfig::new("morph")
            }),
            serde_json::json!({ "classes": ["a", "b", "c"] }),
        ),
        (Box::new(RegressionConfig::new("vf")), serde_json::json!({ "mean": 0.2, "std": 0.1 })),
    ]
}

#[test]
fn variables_are_named_by_trunk_and_head() {
    let vs = nn::VarStore::new(Device::Cpu);
    let trunk = TrunkConfig { hidden: vec![6, 5], ..TrunkConfig::default() };
    let m = MultiHeadModel::new(&vs.root(), 7, Some(&trunk), &two_heads()).unwrap();
    let mut names: Vec<(String, Vec<i64>)> = vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
    names.sort();
    let expected: Vec<(String, Vec<i64>)> = [
        ("heads.morph.hidden0.bias", vec![4]),
        ("heads.morph.hidden0.weight", vec![4, 5]),
        ("heads.morph.out.bias", vec![3]),
        ("heads.morph.out.weight", vec![3, 4]),
        ("heads.vf.out.bias", vec![1]),
        ("heads.vf.out.weight", vec![1, 5]),
        ("trunk.0.bias", vec![6]),
        ("trunk.0.weight", vec![6, 7]),
        ("trunk.1.bias", vec![5]),
        ("trunk.1.weight", vec![5, 6]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(names, expected);
    assert_eq!(m.head_names(), ["morph", "vf"]);
    assert_eq!(m.loss_weights(), [2.0, 1.0]);
    assert_eq!(m.trunk().unwrap().out_dim(), 5);
    let out = m.forward(&Tensor::randn([3, 7], (Kind::Float, Device::Cpu)), true).unwrap();
    assert_eq!(out.iter().map(Tensor::size).collect::<Vec<_>>(), [vec![3, 3], vec![3, 1]]);
    assert_eq!(m.decode(&out).unwrap().iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
}

#[test]
fn total_loss_is_the_weighted_sum() {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = MultiHeadModel::new(&vs.root(), 3, None, &two_heads()).unwrap();
    let total = m.total_loss(&[Tensor::from(0.5f64), Tensor::from(4.0f64)]).double_value(&[]);
    assert!((total - (2.0 * 0.5 + 4.0)).abs() < 1e-12);
}

#[test]
fn bad_head_sets_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut heads = two_heads();
    heads.push((Box::new(RegressionConfig::new("vf")), serde_json::json!({ "mean": 0.0, "std": 1.0 })));
    let e = MultiHeadModel::new(&vs.root(), 3, None, &heads).unwrap_err().to_string();
    assert!(e.contains("`vf`") && e.contains("unique"), "{e}");

    let dotted = [(
        Box::new(RegressionConfig::new("a.b")) as Box<dyn HeadConfig>,
        serde_json::json!({ "mean": 0.0, "std": 1.0 }),
    )];
    assert!(MultiHeadModel::new(&vs.root(), 3, None, &dotted).unwrap_err().to_string().contains("a.b"));

    let negative = [(
        Box::new(RegressionConfig { weight: -1.0, ..RegressionConfig::new("r") }) as Box<dyn HeadConfig>,
        serde_json::json!({ "mean": 0.0, "std": 1.0 }),
    )];
    assert!(MultiHeadModel::new(&vs.root(), 3, None, &negative).is_err());
    let none: [(Box<dyn HeadConfig>, HeadState); 0] = [];
    assert!(MultiHeadModel::new(&vs.root(), 3, None, &none).is_err());
    let bad_state = [(
        Box::new(ClassificationConfig::new("c")) as Box<dyn HeadConfig>,
        serde_json::json!({ "mean": 0.0 }),
    )];
    assert!(MultiHeadModel::new(&vs.root(), 3, None, &bad_state)
        .unwrap_err()
        .to_string()
        .contains("classes"));
    let empty_trunk = TrunkConfig { hidden: vec![], ..TrunkConfig::default() };
    assert!(MultiHeadModel::new(&vs.root(), 3, Some(&empty_trunk), &two_heads()).is_err());
    let bad_dropout = TrunkConfig { dropout: 1.0, ..TrunkConfig::default() };
    assert!(MultiHeadModel::new(&vs.root(), 3, Some(&bad_dropout), &two_heads()).is_err());
}

#[test]
fn trunk_config_from_toml() {
    let t: TrunkConfig = toml::from_str("").unwrap();
    assert_eq!(t, TrunkConfig { hidden: vec![100], activation: Activation::Relu, dropout: 0.0, taps: None });
    let t: TrunkConfig = toml::from_str("hidden = [8, 4]\nactivation = \"none\"\ndropout = 0.25").unwrap();
    assert_eq!(
        t,
        TrunkConfig { hidden: vec![8, 4], activation: Activation::Identity, dropout: 0.25, taps: None }
    );
    let e = toml::from_str::<TrunkConfig>("hiden = [8]").unwrap_err().to_string();
    assert!(e.contains("hiden"), "{e}");
    assert!(toml::from_str::<TrunkConfig>("activation = \"swish\"").is_err());
}

#[test]
fn activations_apply_as_named() {
    let x = Tensor::from_slice(&[-1.0f64, 0.0, 2.0]);
    let at = |a: Activation| Vec::<f64>::try_from(&a.apply(&x).unwrap()).unwrap();
    assert_eq!(at(Activation::Relu), [0.0, 0.0, 2.0]);
    assert_eq!(at(Activation::Identity), [-1.0, 0.0, 2.0]);
    assert!((at(Activation::Tanh)[0] + 1f64.tanh()).abs() < 1e-12);
    // gelu(x) = x * Phi(x); Phi(2) = 0.97725.
    assert!((at(Activation::Gelu)[2] - 2.0 * 0.977_249_868).abs() < 1e-6);
}

// ---- Taps: heads that read their own feature columns ----------------------

prop_compose! {
    fn tapped_case()(case in case(), widths in vec(1i64..4, 2..=3))(
        assign in vec(0..widths.len(), case.heads.len()),
        features in vec(-2.0f64..2.0, case.n * widths.iter().sum::<i64>() as usize),
        case in Just(case),
        widths in Just(widths),
    ) -> (Case, Vec<i64>, Vec<usize>) {
        let mut case = case;
        case.d = widths.iter().sum();
        case.features = features;
        (case, widths, assign)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// (6) Without a trunk, a head that reads one tap is independent of every
    /// other tap in the strictest sense: its loss has no gradient on their
    /// columns, and changing them leaves its output as it was.
    #[test]
    fn heads_reading_different_taps_are_independent((case, widths, assign) in tapped_case()) {
        let layout = TapLayout::new(widths.iter().enumerate().map(|(i, w)| (format!("t{i}"), *w)).collect());
        let routes = Routes { trunk: None, heads: assign.iter().map(|&a| Some(layout.columns(&[a]))).collect() };
        tch::manual_seed(case.seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let m = MultiHeadModel::routed(&vs.root(), case.d, None, &configs(&case), routes).unwrap();
        vs.double();
        prop_assert!(m.heads_are_separable());
        let t = encode(&m, &case, &case.labels);
        let x = features(&case).set_requires_grad(true);
        let changed = features(&case).neg() * 3.0 + 1.0;
        for (i, &tap) in assign.iter().enumerate() {
            let mut g = x.grad();
            if g.defined() {
                let _ = g.zero_();
            }
            m.losses(&m.forward(&x, false).unwrap(), &t).unwrap()[i].backward();
            let g = x.grad();
            let (start, len) = layout.columns(&[tap])[0];
            // Other taps' columns of `changed`, this tap's of `x`.
            let mixed = changed.copy();
            mixed.narrow(1, start, len).copy_(&x.detach().narrow(1, start, len));
            let before = m.forward(&x.detach(), false).unwrap()[i].copy();
            let after = m.forward(&mixed, false).unwrap()[i].copy();
            prop_assert_eq!(max_abs(&(before - after)), 0.0, "head {} saw another tap", i);
            for other in (0..widths.len()).filter(|&o| o != tap) {
                let (s, l) = layout.columns(&[other])[0];
                prop_assert_eq!(max_abs(&g.narrow(1, s, l)), 0.0, "loss {} reaches tap {}", i, other);
            }
            // The model's own single-head forward agrees.
            let own = m.forward_head(i, &x.detach(), false).unwrap().unwrap();
            prop_assert_eq!(max_abs(&(own - m.forward(&x.detach(), false).unwrap()[i].copy())), 0.0);
        }
    }
}

/// `taps = "auto"` picks, among every single tap and contiguous run, the
/// one tap that carries the label, by k-fold inside the training rows (no
/// validation part) and on a validation part of 120 rows.
#[test]
fn auto_taps_pick_the_informative_tap() {
    let n = 360usize;
    let classes = 3;
    let label: Vec<usize> = (0..n).map(|i| i % classes).collect();
    // Data from a local generator, not libtorch's global one (other tests of
    // this binary draw from it on other threads at the same time).
    let state = std::cell::Cell::new(0x9E37_79B9_7F4A_7C15u64);
    let uniform = || {
        let x = state.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        state.set(x);
        ((x >> 11) as f64 / (1u64 << 53) as f64) as f32
    };
    let noise = |w: i64| {
        // Sums of 4 uniforms, centred and scaled: near-normal, unit variance.
        let v: Vec<f32> =
            (0..n as i64 * w).map(|_| ((0..4).map(|_| uniform()).sum::<f32>() - 2.0) * 3f32.sqrt()).collect();
        Tensor::from_slice(&v).view([n as i64, w])
    };
    let signal = noise(3) * 0.6
        + Tensor::from_slice(
            &label
                .iter()
                .flat_map(|&c| (0..3).map(move |j| (j == c) as i64 as f32 * 1.5))
                .collect::<Vec<_>>(),
        )
        .view([n as i64, 3]);
    let features = Tensor::cat(&[noise(24), signal, noise(24)], 1);
    let layout = TapLayout::new(vec![("a".into(), 24), ("b".into(), 3), ("c".into(), 24)]);
    let text = "[data]\nmanifest = \"unused.csv\"\n[extractor]\ntype = \"two_point\"\nsize = 32\n\
                [[heads]]\ntype = \"classification\"\nname = \"phase\"\ntaps = \"auto\"\n\
                [training]\noptimizer = \"lbfgs\"\nweight_decay = [1e-3, 1e-1]\nepochs = 200\n";
    let cfg = LoadedConfig::from_str(text, std::path::Path::new("auto.toml")).unwrap();
    let cells: Vec<Option<String>> = label.iter().map(|c| Some(format!("k{c}"))).collect();
    let data = Dataset {
        source: "auto.csv".into(),
        files: (0..n).map(|i| format!("{i}.png").into()).collect(),
        names: (0..n).map(|i| format!("{i}.png")).collect(),
        columns: [("phase".to_string(), cells.clone())].into_iter().collect(),
        origins: (0..n).map(|i| format!("line {}", i + 2)).collect(),
    };
    let refs: Vec<Option<&str>> = cells.iter().map(Option::as_deref).collect();
    let states = vec![cfg.config.heads[0].fit(&refs).unwrap()];
    let vs = nn::VarStore::new(Device::Cpu);
    let probe =
        MultiHeadModel::new(&vs.root(), 1, None, &[(cfg.config.heads[0].as_ref(), states[0].clone())])
            .unwrap();
    let targets = vec![probe.heads()[0].encode(&refs).unwrap()];
    let strata: Vec<String> = label.iter().map(|c| c.to_string()).collect();
    for val_rows in [0usize, 120] {
        let (val, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| i < val_rows);
        let problem = Problem {
            config: &cfg.config,
            states: &states,
            layout: &layout,
            features: &features,
            targets: &targets,
            data: &data,
            strata: &strata,
            groups: None,
            base: None,
            train: &train,
            val: &val,
            device: Device::Cpu,
            exact: &[false],
        };
        let (choices, init) = choose(&problem, &mut Silent).unwrap();
        let head = &choices.heads[0];
        assert!(head.auto_taps);
        assert_eq!(head.candidates.len(), 6 * 2, "6 runs of taps x 2 weight decays");
        assert_eq!(
            head.taps.as_deref(),
            Some(&["b".to_string()][..]),
            "{val_rows} validation rows: {head:?}"
        );
        let scored = choices.scored_on.clone().unwrap();
        assert!(scored.contains(if val_rows == 0 { "5-fold" } else { "validation part" }), "{scored}");
        assert!(init.iter().any(|(name, _)| name == "heads.phase.out.weight"));
        // The routes read exactly tap b's columns.
        assert_eq!(choices.routes(false).unwrap().heads, vec![Some(vec![(24, 3)])]);
    }
}

/// A config of a `two_point` extractor (tap `two_point`) with `heads` (TOML).
fn loaded(heads: &str) -> Result<LoadedConfig, String> {
    let text = format!(
        "[data]\nmanifest = \"unused.csv\"\n[extractor]\ntype = \"two_point\"\nsize = 32\n{heads}\
         [training]\nepochs = 2\n"
    );
    LoadedConfig::from_str(&text, std::path::Path::new("rules.toml")).map_err(|e| e.to_string())
}

#[test]
fn head_name_and_tap_rules_read_the_same_in_the_config_and_the_model() {
    let head = |kind: &str, name: &str| format!("[[heads]]\ntype = \"{kind}\"\nname = \"{name}\"\n");
    // Lines 6-8 and 9-11: the second head's name is on line 11.
    let twice = loaded(&(head("classification", "p") + &head("regression", "p"))).unwrap_err();
    assert!(
        twice.contains("rules.toml")
            && twice.contains("line 11")
            && twice.contains("duplicate head name `p`")
    );
    let dotted = loaded(&(head("classification", "p") + &head("regression", "a.b"))).unwrap_err();
    assert!(dotted.contains("line 11") && dotted.contains("`a.b`"), "{dotted}");
    // The model builder refuses the same names with the same words.
    let vs = nn::VarStore::new(Device::Cpu);
    let state = serde_json::json!({ "mean": 0.0, "std": 1.0 });
    for (names, rule) in
        [(["p", "p"], "duplicate head name `p`"), (["p", "a.b"], "`a.b`: a name must be non-empty")]
    {
        let heads: Vec<(Box<dyn HeadConfig>, HeadState)> = names
            .iter()
            .map(|n| (Box::new(RegressionConfig::new(*n)) as Box<dyn HeadConfig>, state.clone()))
            .collect();
        let e = MultiHeadModel::new(&vs.root(), 3, None, &heads).unwrap_err().to_string();
        assert!(e.contains(rule), "{e}");
        let in_config = loaded(&names.iter().map(|n| head("regression", n)).collect::<String>()).unwrap_err();
        assert!(in_config.contains(rule), "{in_config}");
    }
    // A head's tap list: a tap twice is refused at its line, as in an extractor's list.
    let taps = head("classification", "p") + "taps = [\"two_point\", \"two_point\"]\n";
    let e = loaded(&taps).unwrap_err();
    assert!(e.contains("line 9") && e.contains("head `p`: tap `two_point` is listed twice"), "{e}");
    assert!(loaded(&(head("classification", "p") + "taps = [\"two_point\"]\n")).is_ok());
    // The input size rule: at the config's line, and when the extractor is built.
    let small = loaded(&head("classification", "p")).unwrap().text.replace("size = 32", "size = 31");
    let e = LoadedConfig::from_str(&small, std::path::Path::new("rules.toml")).unwrap_err().to_string();
    assert!(e.contains("line 5") && e.contains("extractor.size must be at least 32, got 31"), "{e}");
}

#[test]
fn more_folds_than_images_are_refused_at_the_folds_line() {
    let heads = "[[heads]]\ntype = \"classification\"\nname = \"p\"\n";
    let text = loaded(heads).unwrap().text.replace("epochs = 2", "epochs = 2\nfolds = 5");
    let cfg = LoadedConfig::from_str(&text, std::path::Path::new("rules.toml")).unwrap();
    let e = cfg.check_folds(3).unwrap_err().to_string();
    assert!(
        e.contains("rules.toml")
            && e.contains("line 11")
            && e.contains("folds = 5: the data has only 3 images")
    );
    assert!(cfg.check_folds(5).is_ok());
    assert!(loaded(heads).unwrap().check_folds(1).is_ok(), "without folds there is nothing to check");
}
