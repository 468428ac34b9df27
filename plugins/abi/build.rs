//! Links libtorch as every furcate package does.
include!("../../core/build.rs");
