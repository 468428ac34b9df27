//! Which image to label next: the ranking on made-up probabilities and
//! features (uncertainty, diversity, the seeded random choice) and the pool's
//! errors.

use furcate_core::progress::Silent;
use furcate_core::suggest::uncertainty::{HeadSignal, Signal};
use furcate_core::suggest::{pool, rank, Candidates, Strategy};
use tch::{Kind, Tensor};

fn classes(rows: Vec<Vec<f64>>) -> HeadSignal {
    let k = rows[0].len();
    HeadSignal {
        name: "phase".into(),
        signal: Some(Signal::Probabilities { classes: (0..k).map(|c| format!("c{c}")).collect(), rows }),
    }
}

fn order(strategy: Strategy, features: &Tensor, heads: &[HeadSignal], k: usize) -> Vec<usize> {
    let c = Candidates { features, labelled: None, heads };
    rank(strategy, &c, k, 0, &mut Silent).unwrap().iter().map(|r| r.index).collect()
}

/// Margin ranks by the gap between the two likeliest classes, entropy by the
/// spread over all of them: the two disagree where a third class matters.
#[test]
fn margin_and_entropy_rank_made_up_probabilities() {
    let probs = vec![
        vec![0.98, 0.01, 0.01], // sure: margin u 0.03, entropy 0.10
        vec![0.50, 0.50, 0.00], // a tie of two: margin u 1.00, entropy 0.63
        vec![0.40, 0.30, 0.30], // spread over three: margin u 0.90, entropy 0.99
        vec![0.70, 0.20, 0.10], // margin u 0.50, entropy 0.73
    ];
    let heads = [classes(probs)];
    let features = Tensor::zeros([4, 2], (Kind::Float, tch::Device::Cpu));
    assert_eq!(order(Strategy::Margin, &features, &heads, 4), [1, 2, 3, 0]);
    assert_eq!(order(Strategy::Entropy, &features, &heads, 4), [2, 3, 1, 0]);
    let ranked = rank(
        Strategy::Margin,
        &Candidates { features: &features, labelled: None, heads: &heads },
        2,
        0,
        &mut Silent,
    )
    .unwrap();
    assert!((ranked[0].uncertainty.unwrap() - 1.0).abs() < 1e-9);
    assert!(ranked[0].reason.contains("phase c0 0.50 vs c1 0.50"), "{}", ranked[0].reason);
    // A head without a signal is left out of the mean; none at all is an error for margin.
    let none = [HeadSignal { name: "size".into(), signal: None }];
    let c = Candidates { features: &features, labelled: None, heads: &none };
    let e = rank(Strategy::Margin, &c, 2, 0, &mut Silent).unwrap_err().to_string();
    assert!(e.contains("no head gives one"), "{e}");
    assert_eq!(
        rank(Strategy::Diverse, &c, 2, 0, &mut Silent).unwrap().len(),
        2,
        "diverse falls back to distance"
    );
}

/// `clusters` clusters of `size` near-duplicates each, far apart in 8-D;
/// row `i` belongs to cluster `i / size`.
fn clusters(clusters: i64, size: i64) -> Tensor {
    tch::manual_seed(7);
    let centres = Tensor::eye(8, (Kind::Float, tch::Device::Cpu)).narrow(0, 0, clusters) * 10.0;
    let rows = centres.repeat_interleave_self_int(size, Some(0), None);
    rows + Tensor::randn([clusters * size, 8], (Kind::Float, tch::Device::Cpu)) * 0.01
}

/// On clusters of near-duplicates where one cluster is the most uncertain,
/// pure uncertainty picks its copies; `diverse` and `kcentre` pick one image
/// of each cluster, and skip the clusters already labelled.
#[test]
fn suggestions_are_diverse() {
    let (n_clusters, size) = (6, 5);
    let features = clusters(n_clusters, size);
    // Cluster 0 is the least sure (0.90..0.94), the others 0.50..0.54.
    let u: Vec<f64> =
        (0..n_clusters * size).map(|i| if i < size { 0.9 } else { 0.5 } + 0.01 * (i % size) as f64).collect();
    let heads =
        [HeadSignal { name: "h".into(), signal: Some(Signal::Scaled { values: u, what: "u".into() }) }];
    let cluster = |picks: &[usize]| -> Vec<i64> {
        let mut c: Vec<i64> = picks.iter().map(|&i| i as i64 / size).collect();
        c.sort_unstable();
        c
    };
    let k = n_clusters as usize;
    let margin = cluster(&order(Strategy::Margin, &features, &heads, k));
    assert_eq!(
        margin.iter().filter(|&&c| c == 0).count(),
        size as usize,
        "uncertainty alone takes the copies: {margin:?}"
    );
    let all: Vec<i64> = (0..n_clusters).collect();
    assert_eq!(cluster(&order(Strategy::Diverse, &features, &heads, k)), all);
    assert_eq!(cluster(&order(Strategy::KCentre, &features, &heads, k)), all);
    // The first diverse pick is the most uncertain image of all.
    assert_eq!(order(Strategy::Diverse, &features, &heads, 1), [size as usize - 1]);
    // Clusters 0..3 labelled: three suggestions come from clusters 3, 4, 5.
    let labelled = features.narrow(0, 0, 3 * size);
    let c = Candidates { features: &features, labelled: Some(&labelled), heads: &heads };
    let picks: Vec<usize> =
        rank(Strategy::Diverse, &c, 3, 0, &mut Silent).unwrap().iter().map(|r| r.index).collect();
    assert_eq!(cluster(&picks), [3, 4, 5]);
    let first = &rank(Strategy::Diverse, &c, 1, 0, &mut Silent).unwrap()[0];
    assert!(first.distance.unwrap() > 1.0, "a new cluster is farther than the median: {first:?}");
}

/// `badge` on the same clusters, with class probabilities: the unsure
/// clusters' images first, one per cluster (a copy of a pick has an
/// embedding at distance ~0 and waits), never the sure cluster while unsure
/// ones are left; the draw repeats with its seed; without class
/// probabilities it ranks by distance alone and says so.
#[test]
fn badge_draws_unsure_images_unlike_each_other() {
    let (n_clusters, size) = (6, 5);
    let features = clusters(n_clusters, size);
    // Cluster 5 is sure; the others are unsure, each between its own pair of classes.
    let rows: Vec<Vec<f64>> = (0..n_clusters * size)
        .map(|i| {
            let c = (i / size) as usize;
            let mut p = vec![0.0; 6];
            if c == 5 {
                p[5] = 1.0;
            } else {
                p[c] = 0.55;
                p[c + 1] = 0.45;
            }
            p
        })
        .collect();
    let heads = [classes(rows)];
    let c = Candidates { features: &features, labelled: None, heads: &heads };
    let draw = |seed| -> Vec<usize> {
        rank(Strategy::Badge, &c, 5, seed, &mut Silent).unwrap().iter().map(|r| r.index).collect()
    };
    let mut picked: Vec<i64> = draw(0).iter().map(|&i| i as i64 / size).collect();
    picked.sort_unstable();
    assert_eq!(picked, [0, 1, 2, 3, 4], "one image of each unsure cluster");
    assert_eq!(draw(3), draw(3));
    let ranked = rank(Strategy::Badge, &c, 1, 0, &mut Silent).unwrap();
    assert!(ranked[0].reason.contains("gradient embedding"), "{}", ranked[0].reason);
    let values = vec![0.5; (n_clusters * size) as usize];
    let scaled = [HeadSignal { name: "v".into(), signal: Some(Signal::Scaled { values, what: "u".into() }) }];
    let c = Candidates { features: &features, labelled: None, heads: &scaled };
    let ranked = rank(Strategy::Badge, &c, 2, 0, &mut Silent).unwrap();
    assert!(ranked[0].reason.contains("by distance alone (kcentre)"), "{}", ranked[0].reason);
}

#[test]
fn random_choice_is_seeded_and_never_repeats() {
    let features = Tensor::zeros([50, 3], (Kind::Float, tch::Device::Cpu));
    let c = Candidates { features: &features, labelled: None, heads: &[] };
    let pick = |seed| -> Vec<usize> {
        rank(Strategy::Random, &c, 10, seed, &mut Silent).unwrap().iter().map(|r| r.index).collect()
    };
    assert_eq!(pick(1), pick(1));
    assert_ne!(pick(1), pick(2));
    let mut p = pick(3);
    p.sort_unstable();
    p.dedup();
    assert_eq!(p.len(), 10);
    // More asked than there are: every candidate once.
    assert_eq!(rank(Strategy::KCentre, &c, 80, 0, &mut Silent).unwrap().len(), 50);
}

#[test]
fn pool_entries_expand_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("new");
    std::fs::create_dir(&sub).unwrap();
    for name in ["b_2.png", "a_1.png", "a_3.tif", "notes.txt"] {
        std::fs::write(sub.join(name), b"x").unwrap();
    }
    let glob = dir.path().join("n*").join("a_[0-9].*");
    let files = pool::expand(&[glob.clone(), sub.join("b_2.png"), sub.join("a_1.png")]).unwrap();
    let names: Vec<String> =
        files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a_1.png", "a_3.tif", "b_2.png"], "glob matches sorted, each file once");
    assert_eq!(pool::expand(std::slice::from_ref(&sub)).unwrap().len(), 3, "a folder's images");
    for (entry, says) in [
        (sub.join("absent.png"), "No such file"),
        (sub.join("notes.txt"), "not an image file"),
        (dir.path().join("*.png"), "matches no image"),
        (dir.path().join("empty_dir"), "no images in this folder"),
    ] {
        if entry.ends_with("empty_dir") {
            std::fs::create_dir(&entry).unwrap();
        }
        let e = pool::expand(std::slice::from_ref(&entry)).unwrap_err().to_string();
        assert!(e.contains(&entry.display().to_string()) && e.contains(says), "{e}");
    }
}

/// The simulation file in the docs parses, and the repository's own loads with its base config.
#[test]
fn simulation_files_of_the_docs_and_configs_load() {
    use furcate_core::suggest::simulate::{Simulation, SimulationConfig};
    let md = include_str!("../../docs/src/suggest.md");
    let blocks: Vec<&str> = md.split("```toml").skip(1).filter_map(|b| b.split("```").next()).collect();
    assert!(!blocks.is_empty());
    for b in blocks {
        let c: SimulationConfig = toml::from_str(b).unwrap_or_else(|e| panic!("{e}\n{b}"));
        assert_eq!(c.strategies.len(), Strategy::NAMES.len(), "every strategy is compared");
    }
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let all = Simulation::from_file(&configs.join("evidence/active_all.toml")).unwrap();
    assert_eq!(all.config.strategies.len(), Strategy::NAMES.len(), "every strategy is compared");
    let sim = Simulation::from_file(&configs.join("thesis/active.toml")).unwrap();
    assert!(sim.config.seeds.len() >= 3, "the published curve has at least 3 seeds");
    assert!(sim.config.strategies.contains(&Strategy::Random), "the reference line is drawn");
    for s in [&all, &sim] {
        assert_eq!(s.base.config.heads.len(), 2);
    }
}
