//! furcate-core's integration tests: one harness (one binary, one link
//! against libtorch) with a module per file; shared fixtures, the parity
//! references and the skip rule in [`common`].

mod common;

mod augment;
mod data;
mod extractor_classical;
mod extractor_finetune;
mod extractor_lite0;
mod extractor_resnet50;
mod features_cache;
mod heads;
mod loss_weighting;
mod model_props;
mod module_cycles;
mod report;
mod shard;
mod train;
mod weights_errors;
