//! The one error type of `furcate-core`.

use std::path::PathBuf;

/// Everything that can go wrong inside `furcate-core`.
///
/// Each variant carries the file, line or field it is about, so that the
/// message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file (or table) is invalid.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file, or a description of where the table came from.
        path: PathBuf,
        /// What is wrong, with the TOML line where one is known.
        message: String,
    },
    /// A weights file is missing, not safetensors, or does not fit the network.
    #[error("weights file {path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Input data (manifest, labels, images) is invalid.
    #[error("{path}: {message}")]
    Data {
        /// The file the data came from.
        path: PathBuf,
        /// What is wrong, with the line or column where one is known.
        message: String,
    },
    /// A label of one sample cannot be used by a head (unknown class, not a number, ...).
    #[error("sample {index}: {message}")]
    Label {
        /// Index of the sample in the labels handed to the head.
        index: usize,
        /// What is wrong with the label.
        message: String,
    },
    /// A value handed to an API is invalid (shapes, empty inputs, ...).
    #[error("{0}")]
    Invalid(String),
    /// libtorch is missing, has the wrong version, or failed.
    #[error("libtorch: {0}")]
    Torch(String),
    /// Training diverged or could not proceed.
    #[error("training: {0}")]
    Training(String),
    /// A plugin could not be loaded or failed.
    #[error("plugin {path}: {message}")]
    Plugin {
        /// The plugin library file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e.to_string())
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Config`] for `path`.
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Config { path: path.into(), message: message.into() }
    }

    /// An [`Error::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data { path: path.into(), message: message.into() }
    }

    /// An [`Error::Weights`] for `path`.
    pub fn weights(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Weights { path: path.into(), message: message.into() }
    }
}

/// Items a message lists before it says `and N more` ([`abridged`]).
pub const LISTED: usize = 5;

/// The first [`LISTED`] of `items` joined by `sep`, then `and N more` when
/// there are others: a message about hundreds of names stays one short line.
pub fn abridged(items: &[String], sep: &str) -> String {
    let mut text = items.iter().take(LISTED).map(String::as_str).collect::<Vec<_>>().join(sep);
    if items.len() > LISTED {
        text.push_str(&format!("{sep}and {} more", items.len() - LISTED));
    }
    text
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
