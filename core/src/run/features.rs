//! The first stage of a run: images -> extractor (taps) -> feature cache.
//!
//! Every command gets its features here. The cache is content-addressed
//! ([`crate::features::FeatureCache`]); an extractor made of parts (`concat`)
//! is cached part by part, and a tapped extractor tap by tap, each under the
//! key it has on its own, so a later run asking for a subset or a superset
//! extracts only what is missing: a tapped extractor runs one forward pass
//! over the images that miss any of its taps, stopped after the deepest
//! missing tap.

use std::path::Path;

use tch::Tensor;

use crate::config::{Fit, LoadedConfig};
use crate::data::prepare::{DataSummary, Preprocess, RowPlan};
use crate::data::{image, Dataset};
use crate::extractor::taps::TapLayout;
use crate::extractor::{ExtractorConfig, FeatureExtractor};
use crate::features::{CacheDescription, CacheStats, FeatureCache};
use crate::progress::Progress;
use crate::{weights, Error, Result};

/// The features of a data set: rows in data order (one per image, or one per
/// tile with `[data] tile`, each followed by its `[data] augment` views where
/// asked for), and the taps they are made of.
#[derive(Debug)]
pub struct Features {
    /// `[N, D]` features, `f32`, CPU: one row per row of `plan`.
    pub features: Tensor,
    /// The taps the `D` columns are made of.
    pub layout: TapLayout,
    /// Rows extracted now vs found in the cache.
    pub stats: CacheStats,
    /// Which image (and tile) each row is.
    pub plan: RowPlan,
    /// How the images were read (intensity mode, bit depths, tiles).
    pub summary: DataSummary,
}

/// Features of every image of `data` for `cfg`'s extractor, through the
/// feature cache: the plain rows only (no `[data] augment` views).
///
/// Statistics count a row as extracted when any part or tap had to extract it.
pub fn features_for(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    data: &Dataset,
    progress: &mut dyn Progress,
) -> Result<Features> {
    features_augmented(cfg, extractor, data, &vec![false; data.len()], progress)
}

/// [`features_for`], the rows of each image `augmented[i]` followed by their
/// `[data] augment` views ([`crate::data::augment`]), each cached under its own name.
pub fn features_augmented(
    cfg: &LoadedConfig,
    extractor: &dyn FeatureExtractor,
    data: &Dataset,
    augmented: &[bool],
    progress: &mut dyn Progress,
) -> Result<Features> {
    let c = &cfg.config;
    let pre = Preprocess { data: &c.data, size: extractor.input_spec().size as usize };
    let plan = pre.plan_augmented(data, augmented)?;
    let root = match &c.data.feature_cache {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => cfg.dir().join(p),
        None => weights::cache_dir().join("features"),
    };
    let source = FeatureSource { data, pre: &pre, plan: &plan, root: &root, fit: c.data.fit };
    let (features, widths, extracted) = source.features(c.extractor.as_ref(), extractor, progress)?;
    let names = c.extractor.tap_names();
    if names.len() != widths.len() {
        return Err(Error::Invalid(format!(
            "the extractor names {} taps but gave {} blocks of features",
            names.len(),
            widths.len()
        )));
    }
    let layout = TapLayout::new(names.into_iter().zip(widths).collect());
    let stats = CacheStats { hits: plan.names.len() - extracted, extracted };
    let summary = plan.summary(c.data.intensity);
    Ok(Features { features, layout, stats, plan, summary })
}

/// The images and cache [`features_for`] works from.
struct FeatureSource<'a> {
    data: &'a Dataset,
    pre: &'a Preprocess<'a>,
    plan: &'a RowPlan,
    root: &'a Path,
    fit: Fit,
}

impl FeatureSource<'_> {
    /// Features, the width of each tap, and how many rows had to be extracted.
    fn features(
        &self,
        config: &dyn ExtractorConfig,
        extractor: &dyn FeatureExtractor,
        progress: &mut dyn Progress,
    ) -> Result<(Tensor, Vec<i64>, usize)> {
        if let (Some(configs), Some(parts)) = (config.parts(), extractor.parts()) {
            let mut features = Vec::with_capacity(parts.len());
            let mut widths = Vec::new();
            let mut extracted = 0;
            for (c, e) in configs.iter().zip(parts) {
                let (f, w, x) = self.features(c.as_ref(), e.as_ref(), progress)?;
                features.push(f);
                widths.extend(w);
                extracted = extracted.max(x);
            }
            return Ok((Tensor::cat(&features, 1), widths, extracted));
        }
        let taps = config.tap_names().len();
        let json =
            |c: &dyn ExtractorConfig| serde_json::to_string(c).map_err(|e| Error::Invalid(e.to_string()));
        let keyed: Vec<String> = match config.tap_config(0) {
            None => vec![json(config)?],
            Some(_) => (0..taps)
                .filter_map(|i| config.tap_config(i))
                .map(|c| json(c.as_ref()))
                .collect::<Result<_>>()?,
        };
        let fit = serde_json::to_string(&self.fit).unwrap_or_default();
        let caches: Vec<FeatureCache> = keyed
            .into_iter()
            .map(|extractor_json| {
                let weights_sha256 = extractor.weights_sha256();
                FeatureCache::for_config(
                    self.root,
                    CacheDescription { extractor: extractor_json, weights_sha256, fit: fit.clone() },
                )
            })
            .collect();
        let names = &self.plan.names;
        let mut known: Vec<_> = caches.iter().map(FeatureCache::known).collect();
        let missing: Vec<Vec<usize>> = known.iter().map(|k| FeatureCache::missing(k, names)).collect();
        let mut union: Vec<usize> = missing.iter().flatten().copied().collect();
        union.sort_unstable();
        union.dedup();
        if !union.is_empty() {
            let which: Vec<usize> = (0..caches.len()).filter(|&t| !missing[t].is_empty()).collect();
            let rows = self.extract(extractor, &union, &which, caches.len() == 1, progress)?;
            for (t, block) in which.iter().zip(rows) {
                // The rows this tap lacks, out of the union extracted.
                let pick: Vec<i64> = missing[*t]
                    .iter()
                    .map(|i| union.binary_search(i).map(|p| p as i64).unwrap_or_default())
                    .collect();
                let block = block.index_select(0, &Tensor::from_slice(&pick));
                let rows = missing[*t].iter().map(|&i| names[i].clone()).collect();
                caches[*t].store(&mut known[*t], rows, &block)?;
            }
        }
        let blocks: Vec<Tensor> = known.iter().map(|k| FeatureCache::gather(k, names)).collect();
        let widths = blocks.iter().map(|b| b.size()[1]).collect();
        Ok((Tensor::cat(&blocks, 1), widths, union.len()))
    }

    /// The taps `which` of the rows `rows` (images or tiles), in batches, with progress.
    /// `whole`: the extractor has one tap, taken with its plain `extract`.
    fn extract(
        &self,
        extractor: &dyn FeatureExtractor,
        rows: &[usize],
        which: &[usize],
        whole: bool,
        progress: &mut dyn Progress,
    ) -> Result<Vec<Tensor>> {
        progress.start("extracting features", rows.len() as u64);
        let size = extractor.input_spec().size as usize;
        let pre = Preprocess { size, ..self.pre.clone() };
        let bs = extractor.batch_size().max(1);
        let chunk = (bs * 4).max(64);
        let mut parts: Vec<Vec<Tensor>> = which.iter().map(|_| Vec::new()).collect();
        let mut done = 0;
        for part in self.chunks(rows, chunk) {
            let images = image::stack(&pre.load_rows(self.data, self.plan, part)?, size);
            if whole {
                parts[0].push(extractor.extract_all(&images, &mut |_| {})?);
            } else {
                let n = images.size()[0];
                let mut start = 0;
                while start < n {
                    let len = (bs as i64).min(n - start);
                    for (p, t) in
                        parts.iter_mut().zip(extractor.extract_taps(&images.narrow(0, start, len), which)?)
                    {
                        p.push(t);
                    }
                    start += len;
                }
            }
            done += part.len();
            progress.advance(done as u64, None);
        }
        progress.finish();
        Ok(parts.iter().map(|p| Tensor::cat(p, 0)).collect())
    }

    /// `rows` cut into runs of at least `chunk` rows that end at an image's
    /// last row, so each image is decoded once.
    fn chunks<'r>(&self, rows: &'r [usize], chunk: usize) -> Vec<&'r [usize]> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=rows.len() {
            let done = i == rows.len()
                || (i - start >= chunk && self.plan.image[rows[i]] != self.plan.image[rows[i - 1]]);
            if done {
                out.push(&rows[start..i]);
                start = i;
            }
        }
        out
    }
}
