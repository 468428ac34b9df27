//! Progress reporting for long work (extraction, training), so that the
//! command line can draw bars while the library stays UI-free.

/// Receives progress of a long job.
pub trait Progress {
    /// A stage begins with `total` steps.
    fn start(&mut self, stage: &str, total: u64);
    /// `done` of the stage's steps are finished; `message` is a short status (e.g. the loss).
    fn advance(&mut self, done: u64, message: Option<&str>);
    /// The stage is over.
    fn finish(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _stage: &str, _total: u64) {}
    fn advance(&mut self, _done: u64, _message: Option<&str>) {}
}
