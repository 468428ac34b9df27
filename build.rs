//! The `furcate` binary links libtorch exactly as `furcate-core` does.
include!("core/build.rs");
