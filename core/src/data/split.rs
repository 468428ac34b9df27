//! The stratified train / validation / test split.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Row indices of the three parts, each sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Split {
    /// Rows the heads train on.
    pub train: Vec<usize>,
    /// Rows for early stopping and the best epoch.
    pub val: Vec<usize>,
    /// Held-out rows, scored at the end.
    pub test: Vec<usize>,
}

/// Splits `strata.len()` samples into train, validation and test parts.
///
/// Samples are grouped by their stratum (for a run: the tuple of its
/// classification labels); inside each group a seeded shuffle gives
/// `round(test_fraction * n)` samples to test, then
/// `round(validation_fraction * rest)` to validation, the rest to training,
/// so every part has the classes in the data's proportions. A group keeps at
/// least one training sample. The same seed gives the same split on every machine.
///
/// When the training part is to have fewer images than there are strata
/// but at least as many as any stratifying column has labels (few labels:
/// 35 of 3500 images in 70 strata of 7 x 10 labels), the training images are
/// chosen one stratum at a time so that each label of each stratifying
/// column (the parts of a stratum joined by [`STRATUM_SEPARATOR`]) is as
/// evenly covered as it can be: 35 images of 7 morphologies x 10 fractions
/// get 5 per morphology and 3 or 4 per fraction. The validation part is then empty.
///
/// ```
/// use furcate_core::data::split::{stratified, STRATUM_SEPARATOR};
///
/// let strata: Vec<String> =
///     (0..700).map(|i| format!("m{}{STRATUM_SEPARATOR}f{}", i % 7, (i / 7) % 10)).collect();
/// // 35 training images for 70 strata (7 x 10 labels): 5 per `m`, 3 or 4 per `f`.
/// let s = stratified(&strata, 0.95, 0.1, 0);
/// assert_eq!((s.train.len(), s.val.len(), s.test.len()), (35, 0, 665));
/// ```
pub fn stratified(strata: &[String], test_fraction: f64, validation_fraction: f64, seed: u64) -> Split {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in strata.iter().enumerate() {
        groups.entry(s.as_str()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split::default();
    let n_train = strata.len() - (test_fraction * strata.len() as f64).round() as usize;
    // Fewer training images than strata, but enough to cover every label of
    // each stratifying column: choose the strata (else, as below, every
    // stratum keeps one training image).
    let labels_per_column = {
        let mut seen: BTreeMap<usize, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for s in groups.keys() {
            for (c, v) in s.split(STRATUM_SEPARATOR).enumerate() {
                seen.entry(c).or_default().insert(v);
            }
        }
        seen.values().map(|v| v.len()).max().unwrap_or(0)
    };
    if n_train < groups.len() && n_train >= labels_per_column.max(1) {
        return sparse(groups, n_train, &mut rng);
    }
    for rows in groups.values_mut() {
        rows.shuffle(&mut rng);
        let n = rows.len();
        let n_test = ((test_fraction * n as f64).round() as usize).min(n.saturating_sub(1));
        let rest = n - n_test;
        let n_val = ((validation_fraction * rest as f64).round() as usize).min(rest.saturating_sub(1));
        split.test.extend_from_slice(&rows[..n_test]);
        split.val.extend_from_slice(&rows[n_test..n_test + n_val]);
        split.train.extend_from_slice(&rows[n_test + n_val..]);
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    split.test.sort_unstable();
    split
}

/// What joins the labels of several stratifying columns into one stratum.
pub const STRATUM_SEPARATOR: char = '\u{1f}';

/// The few-labels split of [`stratified`]: `n_train` images, one per
/// stratum, the strata chosen so that every column's labels are covered evenly.
fn sparse(mut groups: BTreeMap<&str, Vec<usize>>, n_train: usize, rng: &mut ChaCha8Rng) -> Split {
    let mut order: Vec<&str> = groups.keys().copied().collect();
    order.shuffle(rng);
    for rows in groups.values_mut() {
        rows.shuffle(rng);
    }
    let parts = |s: &str| -> Vec<(usize, String)> {
        s.split(STRATUM_SEPARATOR).enumerate().map(|(c, v)| (c, v.to_string())).collect()
    };
    let mut covered: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut chosen = std::collections::BTreeSet::new();
    let mut split = Split::default();
    for _ in 0..n_train {
        // The stratum whose labels have been chosen least (most-covered label first, then the sum).
        let best = order
            .iter()
            .filter(|s| !chosen.contains(*s))
            .min_by_key(|s| {
                let counts: Vec<usize> =
                    parts(s).into_iter().map(|k| covered.get(&k).copied().unwrap_or(0)).collect();
                (counts.iter().copied().max().unwrap_or(0), counts.iter().sum::<usize>())
            })
            .copied();
        let Some(best) = best else { break };
        chosen.insert(best);
        for k in parts(best) {
            *covered.entry(k).or_insert(0) += 1;
        }
        split.train.push(groups[best][0]);
    }
    for (s, rows) in &groups {
        let skip = usize::from(chosen.contains(s));
        split.test.extend_from_slice(&rows[skip..]);
    }
    split.train.sort_unstable();
    split.test.sort_unstable();
    split
}

/// Stratified `k`-fold assignment of the rows with strata `strata`: each
/// stratum's rows, shuffled with `seed`, are dealt to the folds in turn
/// (continuing where the previous stratum stopped, the strata taken in a
/// seeded random order), so every fold gets its share of each stratum. Returns each fold's row indices, sorted.
///
/// ```
/// use furcate_core::data::split::folds;
///
/// let strata: Vec<String> = (0..10).map(|i| (i % 2).to_string()).collect();
/// let f = folds(&strata, 5, 0);
/// assert_eq!(f.len(), 5);
/// assert!(f.iter().all(|fold| fold.len() == 2));
/// let mut all: Vec<usize> = f.concat();
/// all.sort();
/// assert_eq!(all, (0..10).collect::<Vec<_>>());
/// ```
pub fn folds(strata: &[String], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in strata.iter().enumerate() {
        groups.entry(s.as_str()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x666f_6c64);
    let mut out = vec![Vec::new(); k];
    let mut next = 0;
    // The strata in a seeded random order: dealt in sorted order, strata of
    // one row each (7 morphologies x 10 fractions, one image each) would
    // send every image of the same 2 fractions to the same fold, and that
    // fold's model would never have seen them.
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.shuffle(&mut rng);
    for rows in groups.iter_mut() {
        rows.shuffle(&mut rng);
        for &r in rows.iter() {
            out[next % k].push(r);
            next += 1;
        }
    }
    for f in &mut out {
        f.sort_unstable();
    }
    out
}
