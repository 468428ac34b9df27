//! Fixtures shared by the head tests.

use furcate_core::{HeadConfig, HeadState, PropertyHead};
use tch::{nn, Device, Kind};

/// Double precision on the CPU: gradients and hand computations compare tightly.
pub const CPU: (Kind, Device) = (Kind::Double, Device::Cpu);

/// `config`'s head on `in_dim` features, built in its own store and cast to
/// double precision.
pub fn build(
    config: &dyn HeadConfig,
    in_dim: i64,
    state: &HeadState,
) -> (nn::VarStore, Box<dyn PropertyHead>) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = config.build(vs.root(), in_dim, state).unwrap();
    vs.double();
    (vs, head)
}
