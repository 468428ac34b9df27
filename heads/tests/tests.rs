//! furcate-heads' integration tests: one harness with a module per head;
//! shared fixtures in [`common`].

mod common;

mod gaussian;
mod ordinal;
