//! What a run chose by validation before its final training (taps and
//! weight decays, with every candidate's score); made by
//! [`crate::run::choose`], stored in the checkpoint and `metrics.json`.

use serde::{Deserialize, Serialize};

use crate::extractor::taps::TapLayout;
use crate::model::Routes;
use crate::train::Decay;
use crate::Result;

/// One candidate's validation score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The taps it read, joined with `+` (absent: the head's fixed input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taps: Option<String>,
    /// Its weight decay.
    pub weight_decay: f64,
    /// Its score (lower is better): error rate, MAE or loss, as `measure` says.
    pub score: f64,
    /// `error_rate`, `mae` or `loss`.
    pub measure: String,
    /// Its validation loss (the tie-breaker).
    pub loss: f64,
}

/// What was chosen for one head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadChoice {
    /// The head.
    pub head: String,
    /// The taps it reads directly; `None`: the trunk's output (or every tap without a trunk).
    pub taps: Option<Vec<String>>,
    /// Whether the taps were chosen (`taps = "auto"`).
    pub auto_taps: bool,
    /// Its weight decay.
    pub weight_decay: f64,
    /// Every candidate tried for this head (taps and weight decays), when there was a choice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

/// Everything a run chose, stored in the checkpoint (so `eval` and `predict`
/// rebuild the same model) and written to `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Choices {
    /// The taps of the features, in column order.
    pub layout: Option<TapLayout>,
    /// The trunk's taps (`None`: all, or no trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk_taps: Option<Vec<String>>,
    /// The trunk's weight decay (and every head's on the trunk).
    pub weight_decay: f64,
    /// The trunk's weight decay candidates, when a list was searched jointly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk_candidates: Vec<Candidate>,
    /// Per head, in model order.
    pub heads: Vec<HeadChoice>,
    /// How candidates were scored, when anything was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored_on: Option<String>,
}

impl Choices {
    /// The column routes of these choices.
    pub fn routes(&self, trunk: bool) -> Result<Routes> {
        let Some(layout) = &self.layout else { return Ok(Routes::default()) };
        let cols =
            |names: &[String]| -> Result<Vec<(i64, i64)>> { Ok(layout.columns(&layout.resolve(names)?)) };
        let heads =
            self.heads.iter().map(|h| h.taps.as_deref().map(cols).transpose()).collect::<Result<Vec<_>>>()?;
        let trunk = match (&self.trunk_taps, trunk) {
            (Some(t), true) => Some(cols(t)?),
            _ => None,
        };
        Ok(Routes { trunk, heads })
    }

    /// The weight decay per variable of these choices.
    pub fn decay(&self) -> Decay {
        let mut d = Decay::uniform(self.weight_decay);
        for h in &self.heads {
            d.heads.insert(h.head.clone(), h.weight_decay);
        }
        d
    }
}
