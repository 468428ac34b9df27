//! A run end to end: data, cached features, split, training, evaluation and
//! the run folder (`config.toml`, `metrics.json`, `history.csv`,
//! `predictions.csv`, `checkpoint/`, plots and `report.html`).
//!
//! The run folder is built as `.<name>.partial` beside its final place and
//! renamed at the very end, so a folder named like a run is always complete;
//! the partial folder holds the resumable snapshot that `--resume` continues.
//!
//! [`train_run`] walks the stages in the order the data flows, one module each:
//!
//! 1. [`features`]: images -> extractor (taps) -> feature cache -> rows;
//! 2. [`parts`]: label columns checked, strata, test and validation parts
//!    ([`folds`] for cross-validation, [`warnings`] on the split);
//! 3. [`fit`]: head states, [`choose`] (taps, weight decay; [`exact`] paths
//!    for least-squares heads), [`assemble`]
//!    (scaler, trunk, heads) and training;
//! 4. [`evaluate`](mod@evaluate): predictions ([`aggregate`] per image for tiles), scores,
//!    [`consistency`];
//! 5. [`write`](mod@write): the typed [`results`](RunResults) behind
//!    `metrics.json`, `history.csv`, `predictions.csv` ([`output`]) and the
//!    [`checkpoint`].
//!
//! [`saved`] reads a finished folder back for `eval` and `predict`,
//! [`extract`](mod@extract) runs stage 1 alone, and [`table`] prints the results.

pub mod aggregate;
pub mod assemble;
pub mod checkpoint;
pub mod choose;
pub mod consistency;
pub mod evaluate;
pub mod exact;
pub mod extract;
pub mod features;
pub mod fit;
pub mod folds;
pub mod output;
pub mod parts;
pub mod results;
pub mod saved;
mod scored;
mod semi;
pub mod table;
mod tile_fit;
pub mod warnings;
pub mod write;

use std::path::PathBuf;

use crate::config::LoadedConfig;
use crate::data::{split, Dataset};
use crate::progress::Progress;
use crate::train::TrainOutcome;
use crate::{fsutil, Error, Result};
use evaluate::score_images;
use fit::{FitData, Fitted};
use parts::{check_columns, strata, validation_split};
use write::{data_sha256, partial_dir};

pub use crate::results::{HeadResult, RunResults, TileResult};
pub use assemble::{build_model, build_model_for, build_model_routed, FeatureScaler};
pub use checkpoint::CheckpointState;
pub use consistency::Consistency;
pub use evaluate::{evaluate, predict_features, predict_images, Evaluation, HeadSummary, ImagePredictions};
pub use extract::{extract, extract_from, Extracted};
pub use features::{features_augmented, features_for, Features};
pub use results::RunFacts;
pub use saved::{OutOfFold, PredictOptions, Predicted, SavedRun};
pub use table::{exact_match_label, format_choices, format_table};
pub use write::{history_columns, history_csv, predictions_csv};

/// Options of [`train_run`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run folder to make.
    pub out: PathBuf,
    /// Continue from the snapshot of an interrupted run into the same folder.
    pub resume: bool,
    /// Replace an existing run folder.
    pub force: bool,
    /// Write plots and `report.html`.
    pub report: bool,
    /// When another process is writing the same run folder, wait for it
    /// instead of failing ([`output::claim_run_folder`]).
    pub wait: bool,
}

/// The result of [`train_run`].
#[derive(Debug)]
pub struct RunSummary {
    /// The finished run folder.
    pub dir: PathBuf,
    /// Test scores.
    pub evaluation: Evaluation,
    /// What `metrics.json` holds: the choices made, warnings and notes, the
    /// cross-validation (with `training.folds`) and how the images were read.
    pub results: RunResults,
    /// The training outcome.
    pub outcome: TrainOutcome,
    /// Rows extracted now vs found in the feature cache.
    pub cache: crate::features::CacheStats,
}

/// Trains the run `cfg` describes and writes its run folder. With
/// `training.folds`, cross-validates first ([`folds`]).
pub fn train_run(cfg: &LoadedConfig, opts: &TrainOptions, progress: &mut dyn Progress) -> Result<RunSummary> {
    let c = &cfg.config;
    let _lock = output::claim_run_folder(&opts.out, opts.force, opts.wait)?;
    crate::runtime::apply_config_threads(&c.runtime);
    let images = Dataset::load(&c.data, &cfg.dir())?;
    check_columns(cfg, &images)?;
    let extractor = c.extractor.build(&cfg.build_context())?;
    let weights_sha256 = extractor.weights_sha256();
    let t = &c.training;
    // The split is by image; with tiles and views, each image's rows follow it.
    let image_strata = strata(c, &images)?;
    let (image_parts, why_val) = match t.folds {
        // The final model: every labelled image (less the validation part, if any).
        Some(_) => {
            let all: Vec<usize> = (0..images.len()).collect();
            let (train, val, why) = validation_split(t, &image_strata, &all);
            (split::Split { train, val, test: Vec::new() }, why)
        }
        None => parts::split_labelled(c, &images, &image_strata),
    };
    // [data] augment: views of the training and validation images, and of
    // the test images only when they are predicted with them ([data] tta).
    let mut augmented = vec![!c.data.augment.is_empty(); images.len()];
    if !c.data.tta {
        for &i in &image_parts.test {
            augmented[i] = false;
        }
    }
    let Features { features, layout, stats: cache, plan, summary } =
        features_augmented(cfg, extractor.as_ref(), &images, &augmented, progress)?;
    let mut cv = match t.folds {
        Some(k) => Some(folds::cross_validate(
            cfg,
            extractor.as_ref(),
            &images,
            &features,
            &layout,
            &image_strata,
            k,
            progress,
        )?),
        None => None,
    };
    let mut warnings = warnings::split_warnings(c, &images, &image_parts)?;
    warnings.extend(crate::data::augment::closure_warning(&c.data.augment));
    if let Some(cv) = &cv {
        warnings.extend(cv.warnings.iter().cloned());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut notes = vec![warnings::early_stopping_note(c, image_parts.val.len(), why_val.as_deref())];
    if let Some(cv) = &mut cv {
        notes.push(cv.final_model_note(image_parts.train.len(), image_parts.val.len()));
    }
    let (test_plan, _) = plan.subset(&image_parts.test);
    let test_images = images.subset(&image_parts.test);
    let (data, strata, parts) = plan.expand(&images, image_strata, &image_parts);

    let partial = partial_dir(&opts.out);
    let mut snapshots = checkpoint::ResumeFiles::new(&partial.join("checkpoint"));
    if opts.resume {
        if !snapshots.resume()? {
            tracing::warn!("nothing to resume in {}; training from the start", partial.display());
        }
        let stray = fsutil::remove_stray_temps(&partial);
        if stray > 0 {
            tracing::info!("removed {stray} half-written temporary file(s) from {}", partial.display());
        }
    } else if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let base = plan.augmented().then(|| plan.base());
    let rows = FitData {
        data: &data,
        features: &features,
        layout: &layout,
        strata: &strata,
        groups: (plan.tiled || plan.augmented()).then_some(plan.image.as_slice()),
        base: base.as_deref(),
        scale_rows: None,
    };
    let (fitted, semi) = semi::fit_semi(cfg, extractor.as_ref(), &rows, &parts, &mut snapshots, progress)?;
    if let Some(semi) = &semi {
        tracing::info!("{}", semi.note());
        notes.push(semi.note());
    }
    drop(extractor);
    let Fitted { vs, model, states, choices, outcome, .. } = &fitted;
    let in_dim = features.size()[1];

    let (evaluation, predictions_text, scored) = match &cv {
        Some(cv) => {
            let scored = opts
                .report
                .then(|| scored::scored_images(c, model, &data, "out-of-fold", &cv.predictions, None));
            (cv.pooled(c, model, &data)?, cv.predictions_csv(c, &data)?, scored)
        }
        None => {
            let test_features = fitted.rows(&features, &parts.test);
            let (mut evaluation, predicted) =
                score_images(c, model, &test_features, &test_images, &test_plan)?;
            evaluation.data = Some(test_plan.summary(c.data.intensity));
            let text = aggregate::predictions_table(
                c,
                &test_images,
                &vec!["test".to_string(); test_images.len()],
                &predicted.predictions,
                predicted.tiled_rows(false),
                &[],
            )?;
            let scored = opts.report.then(|| {
                let tiles = predicted
                    .aggregated
                    .is_some()
                    .then_some((&predicted.plan, predicted.rows.predictions.as_slice()));
                scored::scored_images(c, model, &test_images, "test", &predicted.predictions, tiles)
            });
            (evaluation, text, scored)
        }
    };
    let state = CheckpointState {
        furcate_version: crate::VERSION.to_string(),
        config: cfg.to_toml()?,
        config_dir: std::path::absolute(cfg.dir()).unwrap_or_else(|_| cfg.dir()),
        heads: c.heads.iter().map(|h| h.name().to_string()).zip(states.iter().cloned()).collect(),
        in_dim,
        weights_sha256: weights_sha256.clone(),
        split: image_parts.clone(),
        data_sha256: data_sha256(&data),
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.epochs_run,
        plugins: cfg.plugins.records(),
        choices: Some(choices.clone()),
    };
    checkpoint::save(&partial.join("checkpoint"), vs, &state)?;
    let _ = std::fs::remove_file(partial.join("checkpoint").join("resume.safetensors"));
    fsutil::write_atomic(&partial.join("config.toml"), state.config.as_bytes())?;
    let facts = RunFacts {
        config: c,
        model,
        outcome,
        weights_sha256: weights_sha256.as_deref(),
        parts: &image_parts,
        choices: Some(choices),
    };
    let mut results = RunResults::new(facts, &evaluation)?;
    results.data = Some(summary);
    results.warnings = warnings;
    results.notes = notes;
    if let Some(cv) = &cv {
        results.n_out_of_fold = Some(data.len());
        results.cross_validation = Some(cv.summary.clone());
        fsutil::write_atomic(&partial.join(folds::FOLDS_CSV), cv.summary.folds_csv()?.as_bytes())?;
    }
    results.write(&partial)?;
    fsutil::write_atomic(
        &partial.join("history.csv"),
        history_csv(&model.head_names(), &outcome.history).as_bytes(),
    )?;
    fsutil::write_atomic(&partial.join("predictions.csv"), predictions_text.as_bytes())?;
    if opts.report {
        let history = (model.head_names(), outcome.history.as_slice());
        crate::report::write_report_for(&partial, &results, Some((&history.0, history.1)), scored.as_ref())?;
    }
    output::publish_run_folder(&partial, &opts.out, opts.force)?;
    let Fitted { outcome, .. } = fitted;
    Ok(RunSummary { dir: opts.out.clone(), evaluation, results, outcome, cache })
}
