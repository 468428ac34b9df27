//! A finished run folder loaded back for scoring (`furcate eval`) and
//! prediction (`furcate predict`).

use std::path::{Path, PathBuf};

use tch::{nn, Device, Tensor};

use super::assemble::{build_model_routed, encode, FeatureScaler};
use super::evaluate::{predict_images, score_images, Evaluation, HeadSummary};
use super::features::{features_augmented, Features};
use super::parts::check_columns;
use super::write::data_sha256;
use super::{aggregate, checkpoint, output, CheckpointState};
use crate::config::LoadedConfig;
use crate::data::Dataset;
use crate::head::{HeadScore, HeadState};
use crate::model::{MultiHeadModel, Routes};
use crate::progress::Progress;
use crate::results::{CvSummary, RunResults, OUT_OF_FOLD};
use crate::{Error, Result};

/// Options of [`SavedRun::predict_table`].
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Also write each tile's row (tiled runs).
    pub tiles: bool,
    /// The images' micrometres per pixel, for a run with `data.pixel_size`.
    pub pixel_size: Option<f64>,
    /// Add every class's probability as columns `<head>_p_<class>` to the CSV.
    pub probabilities: bool,
    /// Test-time augmentation: average each image's prediction over its
    /// `[data] augment` views ([`crate::data::augment`]). A run trained with
    /// `[data] tta = true` always does.
    pub tta: bool,
}

/// What [`SavedRun::predict_table`] returns.
#[derive(Debug, Clone)]
pub struct Predicted {
    /// The images predicted (files, and the images inside folders).
    pub images: Dataset,
    /// One prediction (and class probabilities) per image.
    pub table: output::PredictionTable,
    /// The CSV text, as `predictions.csv` writes it.
    pub csv: String,
}

/// The scores a cross-validated run already holds (`furcate eval` on a run
/// without a test part): every labelled image was predicted by the fold
/// model that did not train on it, and training scored those predictions
/// pooled (`metrics.json`), fold by fold and as mean ± std (`folds.csv`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutOfFold {
    /// Always [`OUT_OF_FOLD`]: what the scores are of.
    pub scored: &'static str,
    /// The pooled out-of-fold scores, per head in model order (`n`: the
    /// images predicted out of fold).
    #[serde(flatten)]
    pub evaluation: Evaluation,
    /// The folds' own scores and their mean ± std.
    pub cross_validation: CvSummary,
}

impl OutOfFold {
    /// The scores of `results` when it holds a cross-validation; `None` otherwise.
    pub fn from_results(results: &RunResults) -> Option<OutOfFold> {
        let cv = results.cross_validation.clone()?;
        let mut order = cv.head_order.clone();
        order.extend(results.heads.keys().filter(|k| !cv.head_order.contains(k)).cloned());
        let heads = order
            .iter()
            .filter_map(|name| {
                let h = results.heads.get(name)?;
                let score =
                    HeadScore { error_rate: h.error_rate, correct: Vec::new(), metrics: h.metrics.clone() };
                Some(HeadSummary { name: name.clone(), kind: h.kind.clone(), score })
            })
            .collect();
        let evaluation = Evaluation {
            heads,
            cumulative_error: results.cumulative_error,
            exact_match_rate: results.exact_match_rate,
            exact_match_heads: results.exact_match_heads.clone(),
            consistency: results.consistency.clone(),
            n: results.n_out_of_fold.unwrap_or_default(),
            tiles: None,
            data: results.data.clone(),
        };
        Some(OutOfFold { scored: OUT_OF_FOLD, evaluation, cross_validation: cv })
    }

    /// The text `furcate eval` prints: what the scores are, the pooled
    /// table, then the folds' mean ± std.
    pub fn format(&self) -> String {
        format!(
            "out-of-fold scores ({k}-fold cross-validation at training: each of the {n} labelled images \
             predicted by the fold model that did not train on it; from metrics.json, nothing rescored; \
             pass --data to score other labelled images):\n{table}{folds}",
            k = self.cross_validation.k,
            n = self.evaluation.n,
            table = super::format_table(&self.evaluation),
            folds = self.cross_validation.format_table(),
        )
    }
}

/// A saved run, loaded for scoring or prediction.
pub struct SavedRun {
    /// Its folder.
    pub dir: PathBuf,
    /// The checkpoint state.
    pub state: CheckpointState,
    /// Its configuration.
    pub config: LoadedConfig,
    /// The model's variables.
    pub vs: nn::VarStore,
    /// The model.
    pub model: MultiHeadModel,
    /// The feature standardisation fitted at training.
    pub scaler: FeatureScaler,
}

impl std::fmt::Debug for SavedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedRun").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SavedRun {
    /// Loads the run folder `dir`.
    pub fn open(dir: &Path) -> Result<SavedRun> {
        std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        let ckpt = dir.join("checkpoint");
        if !ckpt.join("state.json").exists() {
            return Err(Error::data(dir, "not a furcate run folder (no checkpoint/state.json)"));
        }
        let state = checkpoint::load_state(&ckpt)?;
        let state_file = ckpt.join("state.json");
        crate::plugin::verify_records(&state.plugins, &state_file)?;
        let config = LoadedConfig::from_str(&state.config, &state.config_dir.join("config.toml"))
            .map_err(|e| Error::data(&state_file, format!("its config: {e}")))?;
        crate::plugin::verify_loaded(&state.plugins, &config.plugins, &state_file)?;
        crate::runtime::apply_config_threads(&config.config.runtime);
        let states: Vec<HeadState> = state.heads.iter().map(|(_, s)| s.clone()).collect();
        // A fine-tuned run's tail is built from the extractor, then gets its
        // trained values from the checkpoint like every other variable.
        let extractor = if config.config.extractor.trainable_stages() > 0 {
            Some(config.config.extractor.build(&config.build_context())?)
        } else {
            None
        };
        let routes = match &state.choices {
            Some(c) => c.routes(config.config.trunk.is_some())?,
            None => Routes::default(),
        };
        let (mut vs, model, scaler) = build_model_routed(
            &config.config,
            extractor.as_deref(),
            &states,
            state.in_dim,
            routes,
            Device::Cpu,
        )?;
        drop(extractor);
        checkpoint::load_model(&ckpt, &mut vs)?;
        Ok(SavedRun { dir: dir.to_path_buf(), state, config, vs, model, scaler })
    }

    /// Features for `data` with the run's extractor (through the cache),
    /// refusing a weights file that differs from the one the run was trained
    /// on; standardised as at training. A tiled run tiles `data` the same way
    /// (see [`SavedRun::rows`]).
    pub fn features(&self, data: &Dataset, progress: &mut dyn Progress) -> Result<Tensor> {
        Ok(self.rows(data, progress)?.features)
    }

    /// [`SavedRun::features`] with the rows' plan (image and tile of each
    /// row); with the run's `[data] tta`, each row followed by its views.
    pub fn rows(&self, data: &Dataset, progress: &mut dyn Progress) -> Result<Features> {
        self.rows_with(data, self.config.config.data.tta, progress)
    }

    /// [`SavedRun::rows`], with the `[data] augment` views of every image when
    /// `tta` (test-time augmentation); an error when the run has no `augment`.
    pub fn rows_with(&self, data: &Dataset, tta: bool, progress: &mut dyn Progress) -> Result<Features> {
        if tta && self.config.config.data.augment.is_empty() {
            return Err(Error::data(
                self.dir.join("config.toml"),
                "test-time augmentation (--tta) averages over the views that [data] augment makes, and \
                 this run has no augment",
            ));
        }
        let extractor = self.config.config.extractor.build(&self.config.build_context())?;
        if extractor.weights_sha256() != self.state.weights_sha256 {
            return Err(Error::weights(
                self.dir.join("config.toml"),
                format!(
                    "the extractor's weights changed since training (trained with sha256 {}, found {})",
                    self.state.weights_sha256.as_deref().unwrap_or("none"),
                    extractor.weights_sha256().as_deref().unwrap_or("none")
                ),
            ));
        }
        let mut f =
            features_augmented(&self.config, extractor.as_ref(), data, &vec![tta; data.len()], progress)?;
        f.features = self.scaler.apply(&f.features);
        Ok(f)
    }

    /// Scores the run on its own test part, or on the labelled manifest `data`.
    pub fn evaluate(&self, data: Option<&Path>, progress: &mut dyn Progress) -> Result<Evaluation> {
        let c = &self.config.config;
        let set = match data {
            Some(m) => Dataset::from_manifest_with(m, &c.data.image_column, c.data.duplicates)?,
            None => {
                let all = Dataset::load(&c.data, &self.config.dir())?;
                if self.state.data_sha256.is_some() && data_sha256(&all) != self.state.data_sha256 {
                    return Err(Error::data(
                        &all.source,
                        "the data changed since training, so its test split no longer exists; pass --data",
                    ));
                }
                if self.state.split.test.is_empty() {
                    return Err(Error::data(
                        self.dir.join("metrics.json"),
                        "the run has no test part (it was cross-validated and its model trained on every \
                         labelled image): its out-of-fold scores are in metrics.json (cross_validation) and \
                         folds.csv; pass --data to score other labelled images",
                    ));
                }
                all.subset(&self.state.split.test)
            }
        };
        check_columns(&self.config, &set)?;
        // Labels the run cannot score (a class it never saw, a non-number) are
        // errors naming the manifest line, as they are at training.
        encode(&self.model, c, &set, Device::Cpu)?;
        let rows = self.rows(&set, progress)?;
        let mut evaluation = score_images(c, &self.model, &rows.features, &set, &rows.plan)?.0;
        evaluation.data = Some(rows.summary);
        Ok(evaluation)
    }

    /// The out-of-fold scores of a cross-validated run without a test part
    /// ([`OutOfFold`], read from its `metrics.json`); `None` for a run with
    /// a test part, which [`SavedRun::evaluate`] scores.
    pub fn out_of_fold(&self) -> Result<Option<OutOfFold>> {
        if !self.state.split.test.is_empty() {
            return Ok(None);
        }
        let results = RunResults::read(&self.dir)?;
        Ok(OutOfFold::from_results(&results))
    }

    /// The unlabelled images `paths` (files, and the images inside folders)
    /// as a data set, each with the micrometres per pixel `pixel_size`;
    /// errors when the run works at a `data.pixel_size` and none is given.
    pub fn unlabelled(&self, paths: &[PathBuf], pixel_size: Option<f64>) -> Result<Dataset> {
        let mut set = Dataset::from_paths(paths)?;
        let c = &self.config.config;
        if let Some(px) = pixel_size {
            set.columns.insert(c.data.pixel_size_column.clone(), vec![Some(px.to_string()); set.len()]);
        } else if let Some(target) = c.data.pixel_size {
            return Err(Error::Invalid(format!(
                "this run works at data.pixel_size = {target} micrometres per pixel; give the images' own \
                 pixel size (--pixel-size)"
            )));
        }
        Ok(set)
    }

    /// Predictions for unlabelled images, as CSV text (one row per image).
    pub fn predict(&self, paths: &[PathBuf], progress: &mut dyn Progress) -> Result<String> {
        Ok(self.predict_table(paths, &PredictOptions::default(), progress)?.csv)
    }

    /// Predictions for unlabelled images: one row per image (a tiled run
    /// aggregates its tiles, [`aggregate`]: value heads by the mean, class
    /// heads by the mean probability; with [`PredictOptions::tta`] each row
    /// is first averaged over its views the same way), every class's probability, and the
    /// CSV text (with [`PredictOptions::tiles`] each tile's row after its
    /// image's; with [`PredictOptions::probabilities`] the `<head>_p_<class>`
    /// columns).
    pub fn predict_table(
        &self,
        paths: &[PathBuf],
        opts: &PredictOptions,
        progress: &mut dyn Progress,
    ) -> Result<Predicted> {
        let set = self.unlabelled(paths, opts.pixel_size)?;
        let c = &self.config.config;
        let rows = self.rows_with(&set, opts.tta || c.data.tta, progress)?;
        let predicted = predict_images(&self.model, &rows.features, &rows.plan)?;
        let groups = predicted.plan.groups();
        let table =
            output::PredictionTable::per_image(&self.model, &predicted.predictions, &predicted.rows, &groups);
        let extra = if opts.probabilities { table.probability_columns() } else { Vec::new() };
        let csv = aggregate::predictions_table(
            c,
            &set,
            &vec!["predict".to_string(); set.len()],
            &predicted.predictions,
            predicted.tiled_rows(opts.tiles),
            &extra,
        )?;
        Ok(Predicted { images: set, table, csv })
    }
}
