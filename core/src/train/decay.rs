//! Weight decay per variable: one value for the trunk (and a trainable tail),
//! one per head, none on biases or learned loss weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The weight decay of each of a model's variables, by its `VarStore` name.
///
/// ```
/// use furcate_core::train::Decay;
///
/// let mut decay = Decay::uniform(1e-3);
/// decay.heads.insert("fraction".into(), 1e-5);
/// assert_eq!(decay.of("trunk.0.weight"), 1e-3);
/// assert_eq!(decay.of("heads.fraction.out.weight"), 1e-5);
/// assert_eq!(decay.of("heads.morphology.out.weight"), 1e-3);
/// assert_eq!(decay.of("heads.fraction.out.bias"), 0.0);
/// assert_eq!(decay.of("loss_weighting.log_var"), 0.0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decay {
    /// For every variable no entry of `heads` covers.
    pub default: f64,
    /// Per head name, for the variables under `heads.<name>.`.
    pub heads: BTreeMap<String, f64>,
}

impl Decay {
    /// The same value everywhere.
    pub fn uniform(value: f64) -> Self {
        Decay { default: value, heads: BTreeMap::new() }
    }

    /// The decay of the variable `name`: 0 for biases (`*.bias`) and learned
    /// loss weights (`loss_weighting.*`), the head's own value under
    /// `heads.<name>.`, else the default.
    pub fn of(&self, name: &str) -> f64 {
        if name.ends_with(".bias") || name.starts_with("loss_weighting.") {
            return 0.0;
        }
        name.strip_prefix("heads.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|head| self.heads.get(head))
            .copied()
            .unwrap_or(self.default)
    }
}
