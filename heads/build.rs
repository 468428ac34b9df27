//! furcate-heads links libtorch exactly as `furcate-core` does.
include!("../core/build.rs");
