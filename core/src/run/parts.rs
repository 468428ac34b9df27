//! The run's parts: label columns checked, strata, and the validation part.

use tch::Tensor;

use crate::config::{LoadedConfig, RunConfig};
use crate::data::{split, Dataset};
use crate::Result;

/// The columns of the heads that stratify the split (the discrete ones).
pub(crate) fn strata(config: &RunConfig, data: &Dataset) -> Result<Vec<String>> {
    let mut cols = Vec::new();
    for h in &config.heads {
        if h.stratify() {
            cols.push(data.labels(h.column())?);
        }
    }
    Ok((0..data.len())
        .map(|i| {
            cols.iter()
                .map(|c| c[i].unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&split::STRATUM_SEPARATOR.to_string())
        })
        .collect())
}

/// Checks that every head's column is in the data, naming the head's TOML line if not.
pub(crate) fn check_columns(cfg: &LoadedConfig, data: &Dataset) -> Result<()> {
    for h in &cfg.config.heads {
        if !data.columns.contains_key(h.column()) {
            return Err(cfg.error_at(
                &format!("\"{}\"", h.name()),
                format!(
                    "head `{}` reads column `{}`, which {} does not have (columns: {})",
                    h.name(),
                    h.column(),
                    data.source.display(),
                    data.columns.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// [`split::stratified`] of the rows `rows` (indices into the whole set, by
/// their `strata`), its parts mapped back to those indices.
fn stratified_rows(strata: &[String], rows: &[usize], test: f64, val: f64, seed: u64) -> split::Split {
    let sub: Vec<String> = rows.iter().map(|&i| strata[i].clone()).collect();
    let inner = split::stratified(&sub, test, val, seed);
    let map = |v: &[usize]| v.iter().map(|&i| rows[i]).collect::<Vec<_>>();
    split::Split { train: map(&inner.train), val: map(&inner.val), test: map(&inner.test) }
}

/// Stratified `k` folds of `units` (images, or rows where each is its own),
/// each unit taking the stratum of its first row in `rows` (`unit` maps a
/// row to its unit): per fold, positions in `units`. The folds of the
/// weight-decay choice and of `semi_supervised = "auto"`.
pub(crate) fn unit_folds(
    units: &[usize],
    rows: &[usize],
    unit: impl Fn(usize) -> usize,
    strata: &[String],
    k: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let first: std::collections::BTreeMap<usize, usize> = rows.iter().rev().map(|&r| (unit(r), r)).collect();
    let unit_strata: Vec<String> = units.iter().map(|u| strata[first[u]].clone()).collect();
    split::folds(&unit_strata, k, seed)
}

/// The validation part of the rows `rows` (indices into the whole set),
/// by `training.validation_fraction` or its default for that many rows,
/// stratified; returns (training rows, validation rows, why the default).
pub(crate) fn validation_split(
    t: &crate::config::TrainingConfig,
    strata: &[String],
    rows: &[usize],
) -> (Vec<usize>, Vec<usize>, Option<String>) {
    let (fraction, why) = t.validation_fraction_for(rows.len());
    let parts = stratified_rows(strata, rows, 0.0, fraction, t.seed);
    (parts.train, parts.val, why)
}

/// The split of a run without cross-validation: the images with a label
/// for some head are split into training, validation and test parts
/// (stratified, `training.test_fraction`, the validation fraction for the
/// rest); the images without any label (`[data] unlabelled`, empty manifest
/// rows) all go to the training part, where only `semi_supervised` uses them.
/// Returns the parts and why the validation fraction is the default.
pub(crate) fn split_labelled(
    config: &RunConfig,
    images: &Dataset,
    strata: &[String],
) -> (split::Split, Option<String>) {
    let t = &config.training;
    let columns: Vec<&str> = config.heads.iter().map(|h| h.column()).collect();
    let unlabelled = images.unlabelled_rows(&columns);
    let labelled: Vec<usize> = (0..images.len()).filter(|i| unlabelled.binary_search(i).is_err()).collect();
    let rest = labelled.len() - stratified_rows(strata, &labelled, t.test_fraction, 0.0, t.seed).test.len();
    let (validation_fraction, why) = t.validation_fraction_for(rest);
    let mut parts = stratified_rows(strata, &labelled, t.test_fraction, validation_fraction, t.seed);
    parts.train.extend_from_slice(&unlabelled);
    parts.train.sort_unstable();
    (parts, why)
}

/// What [`super::fit::fit_rows`] fits on: the rows of a data set with their features.
pub(crate) struct FitData<'a> {
    pub(crate) data: &'a Dataset,
    pub(crate) features: &'a Tensor,
    pub(crate) layout: &'a crate::extractor::taps::TapLayout,
    pub(crate) strata: &'a [String],
    /// The image of each row, when an image has several rows (tiles, views):
    /// k-fold and leave-one-out keep an image's rows together.
    pub(crate) groups: Option<&'a [usize]>,
    /// The plain row each row is a view of, when some rows are `[data]
    /// augment` views: scores count plain rows (or, with `tta`, each plain
    /// row averaged over its views), never the views as rows of their own.
    pub(crate) base: Option<&'a [usize]>,
    /// The rows the features are standardised on; `None`: the training
    /// part's. The refits of `semi_supervised` keep the first fit's rows,
    /// so that all the fits of a run share one scaler.
    pub(crate) scale_rows: Option<&'a [usize]>,
}
