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

fn yes() -> bool {
    true
}
