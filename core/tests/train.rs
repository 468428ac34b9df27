//! The training loop: determinism, early stopping with the best epoch
//! restored, NaN detection, and exact resumption from a snapshot.

use furcate_core::config::{LoadedConfig, TrainingConfig};
use furcate_core::head::Targets;
use furcate_core::model::MultiHeadModel;
use furcate_core::progress::Silent;
use furcate_core::run::build_model;
use furcate_core::train::{evaluate_losses, train, Batch, Checkpointer, NoCheckpoints, Resume, ResumeInfo};
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

/// libtorch's random generator is global to the process: tests that train
/// (dropout masks, batch orders) take turns so that their draws do not interleave.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A learnable toy problem: the class is the sign of feature 0, the amount is feature 1.
fn problem(rows: i64, seed: i64) -> (TrainingConfig, Batch, Batch, nn::VarStore, MultiHeadModel) {
    let cfg = LoadedConfig::from_str(CONFIG, std::path::Path::new("t.toml")).unwrap();
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
    let states: Vec<_> = cfg
        .config
        .heads
        .iter()
        .zip(&cols)
        .map(|(h, c)| h.fit(&c.iter().map(|s| Some(s.as_str())).collect::<Vec<_>>()).unwrap())
        .collect();
    let (vs, model, _) = build_model(&cfg.config, &states, 6, Device::Cpu).unwrap();
    let encode = |range: std::ops::Range<usize>| -> Vec<Targets> {
        model
            .heads()
            .iter()
            .zip(&cols)
            .map(|(h, c)| {
                h.encode(&c[range.clone()].iter().map(|s| Some(s.as_str())).collect::<Vec<_>>()).unwrap()
            })
            .collect()
    };
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
    let _guard = serial();
    let run = || {
        let (mut t, tr, va, vs, model) = problem(64, 1);
        t.epochs = 150;
        t.batch_size = 16;
        let out = train(&model, &vs, &tr, Some(&va), &t, &mut NoCheckpoints, &mut Silent).unwrap();
        (out, evaluate_losses(&model, &va))
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

#[test]
fn patience_stops_early() {
    let _guard = serial();
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
    let _guard = serial();
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
    let _guard = serial();
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
