//! The training loop: determinism, early stopping with the best epoch
//! restored, NaN detection, and exact resumption from a snapshot; and the
//! full-batch L-BFGS optimiser (parity with torch.optim.LBFGS, Rosenbrock).

use crate::common::{encode_rows, fit_states, python_with, read_tensors, run_reference};
use furcate_core::config::{LoadedConfig, TrainingConfig};
use furcate_core::model::MultiHeadModel;
use furcate_core::progress::Silent;
use furcate_core::run::build_model;
use furcate_core::train::ridge::RidgePath;
use furcate_core::train::{
    evaluate_losses, train, Batch, Checkpointer, Convergence, Iteration, Lbfgs, LbfgsConfig, NoCheckpoints,
    Resume, ResumeInfo,
};
use tch::{nn, Device, Kind, Tensor};

const CONFIG: &str = r#"
[data]
manifest = "unused.csv"
[extractor]
type = "efficientnet_lite0"
[trunk]
hidden = [8]
dropout = 0.2
[[heads]]
type = "classification"
name = "kind"
[[heads]]
type = "regression"
name = "amount"
"#;

/// A learnable toy problem: the class is the sign of feature 0, the amount is feature 1.
fn problem(rows: i64, seed: i64) -> (TrainingConfig, Batch, Batch, nn::VarStore, MultiHeadModel) {
    problem_of(CONFIG, rows, seed)
}

/// [`problem`] with the model `config` declares.
fn problem_of(
    config: &str,
    rows: i64,
    seed: i64,
) -> (TrainingConfig, Batch, Batch, nn::VarStore, MultiHeadModel) {
    let cfg = LoadedConfig::from_str(config, std::path::Path::new("t.toml")).unwrap();
    tch::manual_seed(seed);
    let features = Tensor::randn([rows, 6], (Kind::Float, Device::Cpu));
    let kinds: Vec<String> = Vec::<f32>::try_from(features.select(1, 0))
        .unwrap()
        .iter()
        .map(|v| if *v > 0.0 { "pos" } else { "neg" }.into())
        .collect();
    let amounts: Vec<String> =
        Vec::<f32>::try_from(features.select(1, 1)).unwrap().iter().map(|v| v.to_string()).collect();
    let cols = [kinds, amounts];
    let states = fit_states(&cfg.config, &cols);
    let (vs, model, _) = build_model(&cfg.config, &states, 6, Device::Cpu).unwrap();
    let encode = |rows: std::ops::Range<usize>| encode_rows(&model, &cols, rows);
    let split = (rows * 3 / 4) as usize;
    let train_b = Batch { features: features.narrow(0, 0, split as i64), targets: encode(0..split) };
    let val_b = Batch {
        features: features.narrow(0, split as i64, rows - split as i64),
        targets: encode(split..rows as usize),
    };
    let mut t = cfg.config.training.clone();
    t.learning_rate = 0.01;
    (t, train_b, val_b, vs, model)
}

#[test]
fn training_learns_and_is_deterministic() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    let run = || {
        let (mut t, tr, va, vs, model) = problem(64, 1);
        t.epochs = 150;
        t.batch_size = 16;
        let out = train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap();
        (out, evaluate_losses(&model, &va).unwrap())
    };
    let (a, la) = run();
    let (b, lb) = run();
    assert_eq!(a.history, b.history);
    assert_eq!(la, lb);
    assert!(a.history.last().unwrap().train_total < a.history[0].train_total / 2.0, "{:?}", a.history.last());
    // The kept weights are the best epoch's: their validation loss is the best one recorded.
    let best = a.history[a.best_epoch - 1].val_total.unwrap();
    assert!((la.0 - best).abs() < 1e-5, "{} vs {best}", la.0);
    assert!(a.history.iter().all(|r| r.val_total.unwrap() >= best - 1e-12));
}

/// Separable heads are solved one by one, and only the heads still moving
/// are evaluated again: the history must still be every head's loss at that
/// iteration, as a full evaluation of the model gives it.
#[test]
fn lbfgs_history_of_separable_heads_is_the_models_losses() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    // CONFIG's heads without its trunk; the regression head gets a hidden layer.
    let config = format!(
        "{}hidden = [8]\n[training]\noptimizer = \"lbfgs\"\nweight_decay = 1e-3\n",
        CONFIG.replace("[trunk]\nhidden = [8]\ndropout = 0.2\n", "")
    );
    let (mut t, tr, va, vs, model) = problem_of(&config, 96, 3);
    assert!(model.heads_are_separable());
    t.epochs = 40;
    let out = train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap();
    let last = out.history.last().unwrap();
    let (train_total, train_losses) = evaluate_losses(&model, &tr).unwrap();
    let (val_total, val_losses) = evaluate_losses(&model, &va).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + b.abs());
    assert!(close(last.train_total, train_total), "{} vs {train_total}", last.train_total);
    assert!(close(last.val_total.unwrap(), val_total));
    for (a, b) in
        last.train.iter().zip(&train_losses).chain(last.val.as_ref().unwrap().iter().zip(&val_losses))
    {
        assert!(close(*a, *b), "{a} vs {b}");
    }
    // The losses fall, and every row has every head.
    assert!(last.train_total < out.history[0].train_total);
    assert!(out.history.iter().all(|r| r.train.len() == 2 && r.val.as_ref().is_some_and(|v| v.len() == 2)));
}

#[test]
fn patience_stops_early() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    let (mut t, tr, va, vs, model) = problem(64, 2);
    t.epochs = 5000;
    t.learning_rate = 0.05;
    t.patience = Some(20);
    let out = train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap();
    assert!(out.stopped_early);
    assert_eq!(out.epochs_run, out.best_epoch + 20);
}

#[test]
fn a_diverging_loss_names_the_head_and_epoch() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    let (mut t, tr, va, vs, model) = problem(32, 3);
    t.epochs = 50;
    t.learning_rate = 1e30;
    let err =
        train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("head `") && err.contains("at epoch"), "{err}");
}

/// Keeps snapshots in memory.
#[derive(Default)]
struct Memory {
    snapshots: Vec<(Vec<(String, Tensor)>, ResumeInfo)>,
    resume: Option<Resume>,
}

impl Checkpointer for Memory {
    fn save(&mut self, tensors: Vec<(String, Tensor)>, info: &ResumeInfo) -> furcate_core::Result<()> {
        let copied = tensors.into_iter().map(|(n, t)| (n, t.copy())).collect();
        self.snapshots.push((copied, info.clone()));
        Ok(())
    }
    fn take_resume(&mut self) -> Option<Resume> {
        self.resume.take()
    }
}

#[test]
fn resuming_from_a_snapshot_reproduces_the_whole_run() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    let (mut t, tr, va, vs, model) = problem(48, 4);
    t.epochs = 60;
    t.batch_size = 8;
    t.checkpoint_every = 25;
    let mut mem = Memory::default();
    let whole = train(&model, &vs, &tr, Some(&va), &t, &mut mem, &mut Silent).unwrap();
    assert_eq!(mem.snapshots.len(), 2);
    let (tensors, info) = mem.snapshots.remove(0);
    assert_eq!(info.epoch, 25);

    // A fresh model (different init) resumed from epoch 25 ends exactly where the whole run did.
    let (_, tr2, va2, vs2, model2) = problem(48, 4);
    tch::manual_seed(99);
    let mut resumed = Memory {
        resume: Some(Resume { tensors: tensors.into_iter().collect(), info }),
        ..Default::default()
    };
    let part = train(&model2, &vs2, &tr2, Some(&va2), &t, &mut resumed, &mut Silent).unwrap();
    assert_eq!(part.history, whole.history);
    assert_eq!(part.best_epoch, whole.best_epoch);
    let (a, b) = (vs.variables(), vs2.variables());
    for (name, v) in &a {
        assert!(v.equal(&b[name]), "{name} differs");
    }
}

/// Zeros the gradients of `vars` (the start of every L-BFGS objective).
fn zero_grads(vars: &[&Tensor]) {
    for v in vars {
        let mut g = v.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// Runs `opt` until it converges or `max` iterations; the last iteration.
fn minimise(
    opt: &mut Lbfgs,
    f: &mut dyn FnMut() -> furcate_core::Result<f64>,
    max: usize,
) -> furcate_core::Result<Iteration> {
    let mut last = opt.iterate(f)?;
    while last.converged.is_none() && opt.iterations() < max {
        last = opt.iterate(f)?;
    }
    Ok(last)
}

/// A reproducible, non-separable 4-class logistic regression problem: `x`
/// [300, 10], labels from a random linear map plus noise, and a random start.
fn logistic_problem(kind: Kind) -> (Tensor, Tensor, Tensor, Tensor) {
    tch::manual_seed(7);
    let opts = (Kind::Double, Device::Cpu);
    let x = Tensor::randn([300, 10], opts);
    let map = Tensor::randn([10, 4], opts);
    let y = (x.matmul(&map) + Tensor::randn([300, 4], opts) * 1.5).argmax(1, false);
    let w = Tensor::randn([4, 10], opts) * 0.1;
    let b = Tensor::randn([4], opts) * 0.1;
    (x.to_kind(kind), y, w.to_kind(kind), b.to_kind(kind))
}

const L2: f64 = 1e-3;

/// Our L-BFGS on the logistic problem in `kind`: (final iteration, iterations, evaluations).
fn our_logistic_optimum(kind: Kind, config: LbfgsConfig) -> (Iteration, usize, usize) {
    let (x, y, w0, b0) = logistic_problem(kind);
    let w = w0.set_requires_grad(true);
    let b = b0.set_requires_grad(true);
    let mut opt = Lbfgs::new(vec![w.shallow_clone(), b.shallow_clone()], 1.0, config);
    let mut f = || -> furcate_core::Result<f64> {
        zero_grads(&[&w, &b]);
        let logits = x.matmul(&w.tr()) + &b;
        // (not cross_entropy_for_logits: that one computes in f32)
        let loss = logits.log_softmax(-1, kind).nll_loss(&y) + w.square().sum(kind) * L2;
        loss.backward();
        Ok(loss.double_value(&[]))
    };
    let last = minimise(&mut opt, &mut f, 1000).unwrap();
    (last, opt.iterations(), opt.evaluations())
}

#[test]
fn lbfgs_reaches_torchs_logistic_regression_optimum() {
    // libtorch's random generator is global: alone, no other test draws from it.
    if !crate::alone!() {
        return;
    }
    let Some(py) = python_with(&["torch", "safetensors"]) else { return };
    let (x, y, w, b) = logistic_problem(Kind::Double);
    let dir = tempfile::tempdir().unwrap();
    let problem = dir.path().join("problem.safetensors");
    let l2 = Tensor::from_slice(&[L2]);
    Tensor::write_safetensors(&[("x", &x), ("y", &y), ("w", &w), ("b", &b), ("l2", &l2)], &problem).unwrap();
    let out = run_reference(&py, "lbfgs_reference.py", &[problem.to_str().unwrap()]);
    let reference = read_tensors(&out.path().join("optimum.safetensors"));
    let torch_loss = reference["loss"].double_value(&[0]);
    let torch_grad = reference["grad_max"].double_value(&[0]);
    let torch_iters = reference["iterations"].int64_value(&[0]);
    let torch_evals = reference["evaluations"].int64_value(&[0]);
    // torch stops on tolerance_change once the loss no longer moves in f64 (gradient ~1e-8).
    assert!(torch_grad < 1e-6, "torch did not reach the optimum: gradient {torch_grad:e}");

    let f64_config =
        LbfgsConfig { tolerance_grad: 1e-10, tolerance_change: 1e-14, relative: false, ..Default::default() };
    let (last, iters, evals) = our_logistic_optimum(Kind::Double, f64_config);
    eprintln!(
        "f64: ours {:.15} (|g| {:.1e}, {:?}, {iters} iterations, {evals} evaluations); \
         torch {torch_loss:.15} (|g| {torch_grad:.1e}, {torch_iters} iterations, {torch_evals} evaluations)",
        last.loss, last.grad_max, last.converged
    );
    assert!(
        (last.loss - torch_loss).abs() <= 1e-6 * torch_loss.abs().max(1.0),
        "{} vs {torch_loss}",
        last.loss
    );
    assert!(last.grad_max < 1e-7, "gradient {:e}", last.grad_max);

    let f32_config =
        LbfgsConfig { tolerance_grad: 1e-6, tolerance_change: 1e-10, relative: false, ..Default::default() };
    let (last, iters, evals) = our_logistic_optimum(Kind::Float, f32_config);
    eprintln!(
        "f32: ours {:.9} (|g| {:.1e}, {:?}, {iters} iterations, {evals} evaluations)",
        last.loss, last.grad_max, last.converged
    );
    assert!(
        (last.loss - torch_loss).abs() <= 1e-6 * torch_loss.abs().max(1.0),
        "{} vs {torch_loss}",
        last.loss
    );
    // In f32 the line search cannot see loss changes below one ulp of the loss (~6e-8 here), so it
    // stalls near |g| ~ 1e-5 (torch.optim.LBFGS in f32 stalls at 6.5e-6 on this problem).
    assert!(last.grad_max < 1e-4, "gradient {:e}", last.grad_max);
}

/// A badly scaled objective (one stiff coordinate at curvature 1e-6, many
/// almost flat ones) whose gradient is small: the first, steepest-descent
/// step changes the objective by less than `tolerance_change`, which must not
/// count as convergence (a restart from a snapshot, or the final solve from
/// the chosen candidate, starts that way); the curvature pair it makes
/// scales the next step, which reaches the optimum.
#[test]
fn lbfgs_does_not_stop_after_its_short_first_step() {
    let mut c = vec![1e-12f64; 1000];
    c[0] = 1e-6;
    let c = Tensor::from_slice(&c);
    let x = Tensor::zeros([1000], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let mut f = || -> furcate_core::Result<f64> {
        zero_grads(&[&x]);
        let loss = (&c * (&x - 1.0).square()).sum(Kind::Double) * 0.5;
        loss.backward();
        Ok(loss.double_value(&[]))
    };
    let config = LbfgsConfig { relative: false, ..Default::default() };
    let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, config);
    let first = opt.iterate(&mut f).unwrap();
    assert!(first.grad_max > 1e-7, "the start is not converged: {first:?}");
    assert_eq!(first.converged, None, "{first:?}");
    let mut last = first;
    for _ in 0..50 {
        last = opt.iterate(&mut f).unwrap();
        if last.converged.is_some() {
            break;
        }
    }
    assert_eq!(last.converged, Some(Convergence::Gradient), "{last:?}");
    let x0 = x.double_value(&[0]);
    assert!((x0 - 1.0).abs() < 0.1, "the stiff coordinate is at {x0}");
}

#[test]
fn lbfgs_solves_rosenbrock() {
    let xy = Tensor::from_slice(&[-1.2f64, 1.0]).set_requires_grad(true);
    let mut f = || -> furcate_core::Result<f64> {
        zero_grads(&[&xy]);
        let (a, b) = (xy.get(0), xy.get(1));
        let loss = (&a - 1.0).square() + (&b - a.square()).square() * 100.0;
        loss.backward();
        Ok(loss.double_value(&[]))
    };
    let config =
        LbfgsConfig { tolerance_grad: 1e-10, tolerance_change: 1e-15, relative: false, ..Default::default() };
    let mut opt = Lbfgs::new(vec![xy.shallow_clone()], 1.0, config);
    let last = minimise(&mut opt, &mut f, 100).unwrap();
    let v = Vec::<f64>::try_from(&xy.detach()).unwrap();
    eprintln!(
        "rosenbrock: {v:?} after {} iterations, {} evaluations, {last:?}",
        opt.iterations(),
        opt.evaluations()
    );
    assert!((v[0] - 1.0).abs() < 1e-4 && (v[1] - 1.0).abs() < 1e-4, "{v:?} {last:?}");
    assert!(opt.iterations() <= 100);
}

#[test]
fn lbfgs_converges_on_a_quadratic_by_the_gradient_test() {
    // f(x) = sum(c * (x - m)^2) over two variables, minimum at m.
    let x = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let z = Tensor::from_slice(&[5.0f32]).set_requires_grad(true);
    let m = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0, 0.0, -1.0]).view([2, 3]);
    let c = Tensor::from_slice(&[1.0f32, 10.0, 0.1, 2.0, 5.0, 1.0]).view([2, 3]);
    let mut f = || -> furcate_core::Result<f64> {
        zero_grads(&[&x, &z]);
        let loss = ((&x - &m).square() * &c).sum(Kind::Float) + (&z + 4.0).square().sum(Kind::Float) * 3.0;
        loss.backward();
        Ok(loss.double_value(&[]))
    };
    let config = LbfgsConfig { tolerance_grad: 1e-4, relative: false, ..Default::default() };
    let mut opt = Lbfgs::new(vec![x.shallow_clone(), z.shallow_clone()], 1.0, config);
    let last = minimise(&mut opt, &mut f, 50).unwrap();
    assert_eq!(last.converged, Some(Convergence::Gradient), "{last:?}");
    assert!(last.grad_max <= 1e-4);
    assert!(last.loss.abs() < 1e-6, "{last:?}");
    assert!((&x - &m).abs().max().double_value(&[]) < 1e-4);
    assert!((z.double_value(&[0]) + 4.0).abs() < 1e-4);
    // At the minimum already: converged at once, nothing moves.
    let before = x.detach().copy();
    opt.reset();
    let again = opt.iterate(&mut f).unwrap();
    assert_eq!(again.converged, Some(Convergence::Gradient));
    assert_eq!(again.evaluations, 1);
    assert!(x.detach().equal(&before));
}

/// The optimiser's arithmetic is on the host up to `HOST_VARIABLES`
/// variables and on tensors above: both kinds take the same path. A
/// separable, badly scaled quadratic, the same pattern repeated, is solved
/// either side of the threshold: every test of L-BFGS is a ratio of sums or
/// a largest entry (the loss-change tests are off, the first step is 1 on
/// both), so both take the same steps, to rounding (`f64` on the host,
/// `f32` tensors above).
#[test]
fn lbfgs_takes_the_same_path_with_host_and_tensor_arithmetic() {
    use furcate_core::train::lbfgs::HOST_VARIABLES;
    let solve = |n: i64| -> (Vec<f64>, usize) {
        let x = Tensor::zeros([n], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // Scales 1..5 repeating, minimum at i mod 7.
        let c = Tensor::arange(n, (Kind::Float, Device::Cpu)).remainder(5) + 1.0;
        let m = Tensor::arange(n, (Kind::Float, Device::Cpu)).remainder(7);
        let mut f = || -> furcate_core::Result<f64> {
            zero_grads(&[&x]);
            let loss = ((&x - &m).square() * &c).sum(Kind::Float) * 1e-6;
            loss.backward();
            Ok(loss.double_value(&[]))
        };
        let config = LbfgsConfig {
            tolerance_grad: 1e-10,
            tolerance_change: 0.0,
            relative: false,
            ..Default::default()
        };
        let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, config);
        let last = minimise(&mut opt, &mut f, 200).unwrap();
        assert_eq!(last.converged, Some(Convergence::Gradient), "{n} variables: {last:?}");
        assert!((&x - &m).abs().max().double_value(&[]) < 1e-3, "{n} variables");
        (Vec::<f64>::try_from(x.detach().narrow(0, 0, 35).to_kind(Kind::Double)).unwrap(), opt.iterations())
    };
    // Multiples of 35 (one period of both patterns), either side of the threshold.
    let small = 35 * (HOST_VARIABLES / 35);
    let large = 35 * (HOST_VARIABLES / 35 + 2);
    assert!(small <= HOST_VARIABLES && large > HOST_VARIABLES);
    let (a, ia) = solve(small);
    let (b, ib) = solve(large);
    assert!(ia.abs_diff(ib) <= 1, "the same number of iterations: {ia} and {ib}");
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-4), "{a:?} {b:?}");
}

#[test]
fn lbfgs_counts_evaluations_and_reports_non_finite_objectives() {
    // A NaN objective at the start is an error, not a panic.
    let x = Tensor::ones([3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let mut nan = || -> furcate_core::Result<f64> {
        zero_grads(&[&x]);
        let loss = (&x * f64::NAN).sum(Kind::Double);
        loss.backward();
        Ok(loss.double_value(&[]))
    };
    let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, LbfgsConfig::default());
    let err = opt.iterate(&mut nan).unwrap_err();
    assert!(matches!(err, furcate_core::Error::Training(_)), "{err}");
    assert!(err.to_string().contains("start point"), "{err}");

    // NaN beyond a wall (x > 2), minimum at 1.5 and steps (lr = 10) that overshoot into the
    // wall: the line search backs off and still converges.
    let x = Tensor::zeros([3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let calls = std::cell::Cell::new(0usize);
    let mut walled = || -> furcate_core::Result<f64> {
        calls.set(calls.get() + 1);
        zero_grads(&[&x]);
        let loss = (&x - 1.5).square().sum(Kind::Double);
        loss.backward();
        let v = loss.double_value(&[]);
        Ok(if x.max().double_value(&[]) > 2.0 { f64::NAN } else { v })
    };
    let mut opt = Lbfgs::new(vec![x.shallow_clone()], 10.0, LbfgsConfig::default());
    let mut total = 0;
    let mut last = None;
    while opt.iterations() < 50 {
        let it = opt.iterate(&mut walled).unwrap();
        total += it.evaluations;
        assert!(it.loss.is_finite(), "{it:?}");
        assert!(x.max().double_value(&[]) <= 2.0);
        last = Some(it);
        if it.converged.is_some() {
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.converged, Some(Convergence::Gradient), "{last:?}");
    assert!((&x - 1.5).abs().max().double_value(&[]) < 1e-6, "{x:?}");
    assert_eq!(total, calls.get());
    assert_eq!(opt.evaluations(), calls.get());

    // The objective's error is propagated, with the variables back where they were.
    let before = x.detach().copy();
    let mut failing = || -> furcate_core::Result<f64> {
        zero_grads(&[&x]);
        let loss = (&x - 3.0).square().sum(Kind::Double);
        loss.backward();
        if x.max().double_value(&[]) != before.max().double_value(&[]) {
            return Err(furcate_core::Error::Training("boom".into()));
        }
        Ok(loss.double_value(&[]))
    };
    let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, LbfgsConfig::default());
    let err = opt.iterate(&mut failing).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    assert!(x.detach().equal(&before));
}

#[test]
fn lbfgs_config_reads_toml_with_defaults() {
    let c: LbfgsConfig = toml::from_str("history_size = 5").unwrap();
    assert_eq!(c, LbfgsConfig { history_size: 5, ..Default::default() });
    let d = LbfgsConfig::default();
    assert_eq!(
        (d.history_size, d.tolerance_grad, d.tolerance_change, d.max_line_search),
        (20, 1e-7, 1e-9, 25)
    );
    assert!(toml::from_str::<LbfgsConfig>("histroy_size = 5").is_err());
}

#[test]
fn ridge_leave_one_out_equals_refitting_without_each_row() {
    let gen = |seed: i64, shape: &[i64]| {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    };
    let x = gen(3, &[12, 4]);
    let y = x.matmul(&Tensor::from_slice(&[1.0, -2.0, 0.5, 0.0]).unsqueeze(1)) + gen(4, &[12, 1]) * 0.3 + 2.0;
    for alpha in [0.0, 0.7, 30.0] {
        let loo = RidgePath::new(&x, &y).unwrap().loo_residuals(alpha);
        for i in 0..12i64 {
            let keep = Tensor::from_slice(&(0..12).filter(|&j| j != i).collect::<Vec<i64>>());
            let (w, b) =
                RidgePath::new(&x.index_select(0, &keep), &y.index_select(0, &keep)).unwrap().solve(alpha);
            let pred = x.get(i).unsqueeze(0).matmul(&w.transpose(0, 1)) + &b;
            let direct = y.double_value(&[i, 0]) - pred.double_value(&[0, 0]);
            let shortcut = loo.double_value(&[i, 0]);
            assert!((direct - shortcut).abs() < 1e-9, "alpha {alpha}, row {i}: {direct} vs {shortcut}");
        }
    }
}

#[test]
fn ridge_solution_minimises_the_penalised_objective() {
    tch::manual_seed(5);
    let x = Tensor::randn([40, 6], (Kind::Double, Device::Cpu));
    let y = Tensor::randn([40, 1], (Kind::Double, Device::Cpu));
    let alpha = 3.0;
    let (w, b) = RidgePath::new(&x, &y).unwrap().solve(alpha);
    // The normal equations of [1, X] with the intercept unpenalised.
    let ones = Tensor::ones([40, 1], (Kind::Double, Device::Cpu));
    let a = Tensor::cat(&[&ones, &x], 1);
    let penalty = Tensor::eye(7, (Kind::Double, Device::Cpu)) * alpha;
    let _ = penalty.get(0).get(0).fill_(0.0);
    let theta = (a.transpose(0, 1).matmul(&a) + penalty).inverse().matmul(&a.transpose(0, 1).matmul(&y));
    assert!((theta.double_value(&[0, 0]) - b.double_value(&[0])).abs() < 1e-9);
    let diff = (theta.narrow(0, 1, 6).squeeze_dim(1) - w.squeeze_dim(0)).abs().max().double_value(&[]);
    assert!(diff < 1e-9, "{diff}");
    assert!(RidgePath::new(&x.narrow(0, 0, 1), &y.narrow(0, 0, 1)).is_err(), "one row is not a problem");
}

/// The relative stopping tests make the objective's scale irrelevant: a
/// quadratic multiplied by 1e-8 is solved as far as the same quadratic at
/// scale 1, while absolute tests stop it at the start point.
#[test]
fn lbfgs_relative_tolerances_solve_a_tiny_loss_as_far_as_a_unit_one() {
    let m = Tensor::from_slice(&[1.0f64, -2.0, 0.5]);
    let c = Tensor::from_slice(&[1.0f64, 10.0, 0.1]);
    let solve = |scale: f64, relative: bool| {
        let x = Tensor::zeros([3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let mut f = || -> furcate_core::Result<f64> {
            zero_grads(&[&x]);
            let loss = ((&x - &m).square() * &c).sum(Kind::Double) * scale;
            loss.backward();
            Ok(loss.double_value(&[]))
        };
        let config = LbfgsConfig { relative, ..Default::default() };
        let mut opt = Lbfgs::new(vec![x.shallow_clone()], 1.0, config);
        minimise(&mut opt, &mut f, 100).unwrap();
        (&x - &m).abs().max().double_value(&[])
    };
    assert!(solve(1.0, true) < 1e-5);
    assert!(solve(1e-8, true) < 1e-5, "{}", solve(1e-8, true));
    assert!(solve(1e-8, false) > 0.4, "absolute tests stop at the start");
}

/// A linear regression head with squared loss is solved exactly by the
/// L-BFGS trainer: its weights are the ridge solution of its objective over
/// the training and validation rows.
#[test]
fn lbfgs_trainer_solves_a_linear_squared_loss_head_exactly() {
    let config = format!(
        "{}bounds = [-100.0, 100.0]\n[training]\noptimizer = \"lbfgs\"\nweight_decay = 0.01\n",
        CONFIG.replace("[trunk]\nhidden = [8]\ndropout = 0.2\n", "")
    );
    let (mut t, tr, va, vs, model) = problem_of(&config, 80, 7);
    assert!(model.heads()[1].least_squares().is_some() && model.heads()[0].least_squares().is_none());
    t.epochs = 50;
    train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap();
    let ls = model.heads()[1].least_squares().unwrap();
    // Fitted on the training and validation rows together (its penalty needs no held-out rows).
    let x = Tensor::cat(&[&tr.features, &va.features], 0).to_kind(Kind::Double);
    let y = Tensor::cat(&[&tr.targets[1].values, &va.targets[1].values], 0).to_kind(Kind::Double);
    // weight · mean(r²) + wd / 2 · |w|² is ridge with alpha = n · wd / 2.
    let (w, b) = RidgePath::new(&x, &y).unwrap().solve(x.size()[0] as f64 * 0.01 / 2.0);
    let dw = (ls.weight.to_kind(Kind::Double) - w).abs().max().double_value(&[]);
    let db = (ls.bias.to_kind(Kind::Double) - b).abs().max().double_value(&[]);
    assert!(dw < 1e-5 && db < 1e-5, "weights off by {dw}, bias by {db}");
}

/// Label spreading recovers the labels of separable made-up features from
/// one labelled point per cluster: three elongated Gaussian clusters in 6-D
/// whose long axes make a nearest-seed rule fail on the clusters' far ends.
#[test]
fn propagation_recovers_labels_on_separable_features() {
    use furcate_core::train::propagate::{spread, PropagationConfig};
    tch::manual_seed(3);
    let per = 120i64;
    let centres = [[0.0, 0.0], [0.0, 4.0], [0.0, 8.0]];
    let mut blocks = Vec::new();
    for c in centres {
        let x = Tensor::randn([per, 6], (Kind::Double, Device::Cpu)) * 0.3;
        // Long along dimension 0 (spread 12), centred on `c` in dimensions 1-2.
        let long = Tensor::linspace(-6.0, 6.0, per, (Kind::Double, Device::Cpu));
        let x = x + Tensor::stack(&[long, Tensor::full([per], c[1], (Kind::Double, Device::Cpu))], 1).pad(
            [0, 4],
            "constant",
            Some(0.0),
        );
        blocks.push(x);
    }
    let x = Tensor::cat(&blocks, 0);
    // One seed per cluster, at the cluster's left end.
    let seeds = [(0usize, 0usize), (per as usize, 1), (2 * per as usize, 2)];
    let result = spread(&x, &seeds, 3, &PropagationConfig::default()).unwrap();
    let labels = result.labels();
    let wrong = labels.iter().enumerate().filter(|&(i, &l)| l != i / per as usize).count();
    assert!(wrong <= 3, "{wrong} of {} points got the wrong label", labels.len());
    // Each row is a probability distribution, seeds confident.
    for row in result.probabilities.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    assert!(result.confidence()[0] > 0.5);
    // A bad setting or seed is an error, never a panic.
    let bad = PropagationConfig { alpha: 1.0, ..PropagationConfig::default() };
    assert!(spread(&x, &seeds, 3, &bad).is_err());
    assert!(spread(&x, &[(10_000, 0)], 3, &PropagationConfig::default()).is_err());
    assert!(spread(&x, &[], 3, &PropagationConfig::default()).is_err());
}
