//! Taps: features from several depths of a frozen network, and which of them
//! each head reads.
//!
//! A property lives at its own depth of the network: a phase fraction is a
//! first-order statistic that the first convolutions hold almost linearly and
//! later layers, built for invariance, lose; a morphology needs a few layers
//! of context. So a pretrained CNN extractor can hand out the activation after
//! each of its stages, pooled over space, as a *tap*:
//!
//! ```toml
//! [extractor]
//! type = "efficientnet_lite0"
//! weights = "cache:efficientnet_lite0.safetensors"
//! taps = ["stem", "stage1", "stage2", "stage3"]
//! pool = "mean"            # or "mean_std" / "moments": per-channel mean and
//!                          # standard deviation / mean of the square
//!
//! [[heads]]
//! type = "classification"
//! name = "volume_fraction_class"
//! taps = "auto"            # or a list, e.g. ["stem"]; default: every tap
//! ```
//!
//! The features of a tapped extractor are its taps' pooled activations side by
//! side, in the order listed ([`TapLayout`]). One forward pass, stopped after
//! the deepest tap asked for, yields all of them; the feature cache keeps each
//! tap under its own key, so a later run asking for a subset reads it.
//!
//! | extractor | taps, shallow to deep (pooled width with `pool = "mean"`) |
//! | --- | --- |
//! | `efficientnet_lite0` | `stem` 32, `stage1` 16, `stage2` 24, `stage3` 40, `stage4` 80, `stage5` 112, `stage6` 192, `stage7` 320, `head` 1280 |
//! | `resnet50` | `stem` 64, `layer1` 256, `layer2` 512, `layer3` 1024, `layer4` 2048 |
//!
//! `pool = "mean_std"` and `pool = "moments"` double each width (the means,
//! then the standard deviations or the means of the squared activations).
//! Without `taps`, features are the last tap's mean, exactly the untapped
//! extractor's (and cached under the same key).
//!
//! A tap name may end in a pool, which then overrides the extractor's `pool`
//! for that tap: `taps = ["stem", "stem.moments", "stage2"]` offers the stem's
//! means to one head and its moments to another (see [`Pool::split`]):
//!
//! ```toml
//! [[heads]]
//! type = "regression"
//! name = "volume_fraction"
//! taps = ["stem.moments"]
//! ```

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// How a tap's activation `[N, C, H, W]` is pooled over space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The per-channel mean: `C` features (the default).
    #[default]
    Mean,
    /// The per-channel mean, then the per-channel (population) standard
    /// deviation: `2 C` features.
    MeanStd,
    /// The per-channel mean, then the per-channel mean of the squared
    /// activation (the raw second moment): `2 C` features. A linear head on
    /// them is a quadratic in the activations, which corrects what the
    /// activation's curvature costs a linear read-out of a first-order
    /// statistic such as a phase fraction.
    Moments,
}

impl Pool {
    /// Whether this is the default ([`Pool::Mean`]), which the serialised
    /// extractor table leaves out (so untapped cache keys never change).
    pub fn is_mean(&self) -> bool {
        *self == Pool::Mean
    }

    /// The name it is configured by (`mean`, `mean_std`, `moments`).
    pub fn name(self) -> &'static str {
        match self {
            Pool::Mean => "mean",
            Pool::MeanStd => "mean_std",
            Pool::Moments => "moments",
        }
    }

    /// The pool configured by `name`; `None` for any other string.
    pub fn from_name(name: &str) -> Option<Pool> {
        [Pool::Mean, Pool::MeanStd, Pool::Moments].into_iter().find(|p| p.name() == name)
    }

    /// A configured tap name split into the network's tap and its pool:
    /// `"stem.moments"` is the tap `stem` pooled by [`Pool::Moments`]
    /// whatever the extractor's `pool`; a name without such a suffix is
    /// pooled by `default`. So one head can read a tap's moments while
    /// another reads its mean, each from its own cache entry.
    ///
    /// ```
    /// use furcate_core::extractor::taps::Pool;
    ///
    /// assert_eq!(Pool::split("stem.moments", Pool::Mean), ("stem", Pool::Moments));
    /// assert_eq!(Pool::split("stem", Pool::MeanStd), ("stem", Pool::MeanStd));
    /// assert_eq!(Pool::split("stem.max", Pool::Mean), ("stem.max", Pool::Mean));
    /// ```
    pub fn split(name: &str, default: Pool) -> (&str, Pool) {
        match name.rsplit_once('.') {
            Some((tap, suffix)) => match Pool::from_name(suffix) {
                Some(pool) => (tap, pool),
                None => (name, default),
            },
            None => (name, default),
        }
    }

    /// Features per channel.
    pub fn factor(self) -> i64 {
        match self {
            Pool::Mean => 1,
            Pool::MeanStd | Pool::Moments => 2,
        }
    }

    /// Pools an activation over its spatial positions, in `f32`.
    ///
    /// # Shapes
    /// `[N, C, H, W]` -> `[N, C]` (`mean`) or `[N, 2C]` (`mean_std`, `moments`).
    ///
    /// ```
    /// use furcate_core::extractor::taps::Pool;
    /// use tch::Tensor;
    ///
    /// // One image, one channel of 2 x 2 positions: 1, 2, 3, 4.
    /// let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 1, 2, 2]);
    /// let pooled = |p: Pool| Vec::<f32>::try_from(p.apply(&x).unwrap().view([-1])).unwrap();
    /// assert_eq!(pooled(Pool::Mean), vec![2.5]);
    /// assert_eq!(pooled(Pool::Moments), vec![2.5, 7.5]); // mean of 1, 4, 9, 16
    /// assert_eq!(pooled(Pool::MeanStd), vec![2.5, 1.25f32.sqrt()]);
    /// ```
    pub fn apply(self, x: &Tensor) -> crate::Result<Tensor> {
        let x = x.f_to_kind(Kind::Float)?;
        let dims = [2i64, 3];
        Ok(match self {
            Pool::Mean => x.f_mean_dim(dims.as_slice(), false, Kind::Float)?,
            Pool::MeanStd => {
                let (std, mean) = x.f_std_mean_dim(dims.as_slice(), false, false)?;
                Tensor::f_cat(&[mean, std], 1)?
            }
            Pool::Moments => {
                let mean = x.f_mean_dim(dims.as_slice(), false, Kind::Float)?;
                let square = x.f_square()?.f_mean_dim(dims.as_slice(), false, Kind::Float)?;
                Tensor::f_cat(&[mean, square], 1)?
            }
        })
    }
}

/// The taps a set of features is made of, in column order: each tap's name
/// and width. An untapped extractor has one tap.
///
/// ```
/// use furcate_core::extractor::taps::TapLayout;
///
/// let layout = TapLayout::new(vec![("stem".into(), 32), ("stage1".into(), 16), ("stage2".into(), 24)]);
/// assert_eq!(layout.dim(), 72);
/// assert_eq!(layout.columns(&[1, 2]), vec![(32, 40)]);
/// assert_eq!(layout.columns(&[0, 2]), vec![(0, 32), (48, 24)]);
/// assert_eq!(layout.runs().len(), 6);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapLayout {
    /// `(name, width)` per tap, in column order.
    pub taps: Vec<(String, i64)>,
}

impl TapLayout {
    /// A layout of the given taps.
    pub fn new(taps: Vec<(String, i64)>) -> Self {
        TapLayout { taps }
    }

    /// One tap named `name` covering all `dim` features.
    pub fn single(name: &str, dim: i64) -> Self {
        TapLayout { taps: vec![(name.to_string(), dim)] }
    }

    /// Total width.
    pub fn dim(&self) -> i64 {
        self.taps.iter().map(|t| t.1).sum()
    }

    /// Number of taps.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    /// Whether there is no tap.
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    /// The tap names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.taps.iter().map(|t| t.0.as_str()).collect()
    }

    /// The index of tap `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.taps.iter().position(|t| t.0 == name)
    }

    /// The column ranges `(start, len)` of the taps `indices` (in layout
    /// order, neighbouring taps merged into one range).
    pub fn columns(&self, indices: &[usize]) -> Vec<(i64, i64)> {
        let mut sorted = indices.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut offsets = Vec::with_capacity(self.taps.len());
        let mut at = 0;
        for t in &self.taps {
            offsets.push(at);
            at += t.1;
        }
        let mut out: Vec<(i64, i64)> = Vec::new();
        for i in sorted {
            let (start, len) = (offsets[i], self.taps[i].1);
            match out.last_mut() {
                Some(last) if last.0 + last.1 == start => last.1 += len,
                _ => out.push((start, len)),
            }
        }
        out
    }

    /// Width of the taps `indices`.
    pub fn width(&self, indices: &[usize]) -> i64 {
        self.columns(indices).iter().map(|c| c.1).sum()
    }

    /// Every single tap and every contiguous run of taps, shallow first:
    /// the candidates of `taps = "auto"`.
    pub fn runs(&self) -> Vec<Vec<usize>> {
        let n = self.taps.len();
        let mut out = Vec::new();
        for len in 1..=n {
            for start in 0..=n - len {
                out.push((start..start + len).collect());
            }
        }
        out
    }

    /// Indices of the named taps; a list that [`check_tap_names`] refuses
    /// (empty, an unknown name, a name twice) is its error.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<usize>> {
        check_tap_names("taps", names, &self.names())?;
        Ok(names.iter().filter_map(|n| self.index(n)).collect())
    }

    /// The names of the taps `indices`, joined with `+` (for tables).
    pub fn label(&self, indices: &[usize]) -> String {
        indices.iter().map(|&i| self.taps[i].0.as_str()).collect::<Vec<_>>().join("+")
    }
}

/// Selects the columns `ranges` of `features` (a view when there is one range).
///
/// # Shapes
/// `[N, D]` -> `[N, Σ len]`.
pub fn select_columns(features: &Tensor, ranges: &[(i64, i64)]) -> Tensor {
    match ranges {
        [] => features.shallow_clone(),
        [(start, len)] if *start == 0 && features.size().get(1) == Some(len) => features.shallow_clone(),
        [(start, len)] => features.narrow(1, *start, *len),
        _ => {
            let parts: Vec<Tensor> = ranges.iter().map(|(s, l)| features.narrow(1, *s, *l)).collect();
            Tensor::cat(&parts, 1)
        }
    }
}

/// Which taps a head (or the trunk) reads: `"auto"` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapSelection {
    /// furcate picks, by validation, among the single taps and contiguous runs.
    Auto,
    /// These taps.
    List(Vec<String>),
}

impl Serialize for TapSelection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            TapSelection::Auto => s.serialize_str("auto"),
            TapSelection::List(names) => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TapSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TapSelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a list of tap names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<TapSelection, E> {
                if v == "auto" {
                    Ok(TapSelection::Auto)
                } else {
                    Err(E::custom(format!("taps = \"{v}\": expected \"auto\" or a list of tap names")))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<TapSelection, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(TapSelection::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a configured tap list (of an extractor, the trunk or a head:
/// `whose` starts each message) against the extractor's `valid` tap names:
/// non-empty, known, no name twice. Errors list the valid names. The one
/// rule on tap lists, for the extractors, the config check and [`TapLayout::resolve`].
///
/// ```
/// use furcate_core::extractor::taps::check_tap_names;
///
/// let valid = ["stem", "head"];
/// assert!(check_tap_names("[trunk]", &["head".into()], &valid).is_ok());
/// let e = check_tap_names("head `m`", &["stage9".into()], &valid).unwrap_err().to_string();
/// assert!(e.contains("head `m`: unknown tap `stage9`; the extractor's taps are stem, head"), "{e}");
/// assert!(check_tap_names("[trunk]", &["stem".into(), "stem".into()], &valid).is_err());
/// assert!(check_tap_names("[trunk]", &[], &valid).is_err());
/// ```
pub fn check_tap_names<S: AsRef<str>>(whose: &str, taps: &[String], valid: &[S]) -> Result<()> {
    let list = || valid.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ");
    if taps.is_empty() {
        return Err(Error::Invalid(format!("{whose}: taps is empty; name at least one of {}", list())));
    }
    for (i, t) in taps.iter().enumerate() {
        if !valid.iter().any(|v| v.as_ref() == t) {
            return Err(Error::Invalid(format!(
                "{whose}: unknown tap `{t}`; the extractor's taps are {}",
                list()
            )));
        }
        if taps[..i].contains(t) {
            return Err(Error::Invalid(format!("{whose}: tap `{t}` is listed twice")));
        }
    }
    Ok(())
}

/// The tap names of a concatenation, from its parts' names: each as it is,
/// unless another part has a tap of the same name; those are prefixed by
/// their part's index (`0.stage2`, `1.stage2`). So a concat of a 128-px and
/// a 256-px pass of one network keeps `stem` as it is when only one pass
/// taps it.
///
/// ```
/// use furcate_core::extractor::taps::merge_tap_names;
///
/// let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
/// let merged = merge_tap_names(vec![names(&["stage1", "stage2"]), names(&["stem", "stage2"])]);
/// assert_eq!(merged, ["stage1", "0.stage2", "stem", "1.stage2"]);
/// ```
pub fn merge_tap_names(parts: Vec<Vec<String>>) -> Vec<String> {
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    for name in parts.iter().flatten() {
        *count.entry(name).or_default() += 1;
    }
    parts
        .iter()
        .enumerate()
        .flat_map(|(i, names)| {
            let count = &count;
            names.iter().map(move |n| if count[n.as_str()] > 1 { format!("{i}.{n}") } else { n.clone() })
        })
        .collect()
}
