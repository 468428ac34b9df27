//! Stratified k-fold cross-validation of a run (`[training] folds = K`).

/// The `split` value of an out-of-fold prediction in `predictions.csv`.
pub const OUT_OF_FOLD: &str = "out_of_fold";
