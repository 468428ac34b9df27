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
pub fn stratified(strata: &[String], test_fraction: f64, validation_fraction: f64, seed: u64) -> Split {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in strata.iter().enumerate() {
        groups.entry(s.as_str()).or_default().push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut split = Split::default();
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

/// Stratified `k`-fold assignment of the rows with strata `strata`: each
/// stratum's rows, shuffled with `seed`, are dealt to the folds in turn
/// (continuing where the previous stratum stopped), so every fold gets its
/// share of each stratum. Returns each fold's row indices, sorted.
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
    for rows in groups.values_mut() {
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
