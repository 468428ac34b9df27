//! # furcate-heads
//!
//! Property heads beyond the built-in `classification` and `regression`,
//! written only against `furcate-core`'s public API, as any outside author
//! would write them:
//!
//! - [`ordinal::OrdinalConfig`] (`type = "ordinal"`): ordered classes with a
//!   cumulative-link (CORAL) head; scored with the mean absolute bin error
//!   beside the error rate.
//! - [`gaussian::GaussianConfig`] (`type = "gaussian"`): regression that
//!   predicts a mean and a variance (Gaussian negative log-likelihood), so
//!   that every prediction comes with an interval; scored with the coverage
//!   of the 90 % interval.
//!
//! The heads register themselves with typetag: linking this crate into a
//! binary (`use furcate_heads as _;`) is enough for `type = "ordinal"` and
//! `type = "gaussian"` to be accepted in TOML.
#![deny(missing_docs)]

pub mod gaussian;
pub mod ordinal;

/// Trimmed label cell; `None` when missing or blank (the convention of
/// [`furcate_core::head::encode_cells`]).
fn cell(label: Option<&str>) -> Option<&str> {
    label.map(str::trim).filter(|l| !l.is_empty())
}

/// `t` as a flat `Vec<f64>` on the CPU (NaN where it cannot be read).
fn to_vec_f64(t: &tch::Tensor) -> Vec<f64> {
    let flat = t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Double).reshape([-1]);
    Vec::<f64>::try_from(&flat).unwrap_or_else(|_| vec![f64::NAN; flat.numel()])
}

/// `value` as a JSON object, for [`furcate_core::HeadScore::metrics`].
fn to_map<T: serde::Serialize>(value: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}
