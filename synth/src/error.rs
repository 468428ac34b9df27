//! The one error type of `furcate-synth`.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while reading a synthetic-data config or
/// generating and writing a data set.
///
/// Each variant names the file, and for configs the TOML line and field, so
/// that the message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{}: {message}", Location { path, line: *line, field: None })]
    Toml {
        /// The config file (or a description of where the text came from).
        path: PathBuf,
        /// 1-based line of the offending text, when toml reports a position.
        line: Option<usize>,
        /// What toml said.
        message: String,
    },
    /// A value parses but is not allowed (sigma <= 0, fraction outside (0, 1), ...).
    #[error("{}: {message}", Location { path, line: *line, field: Some(field) })]
    Invalid {
        /// The config file (or a description of where the text came from).
        path: PathBuf,
        /// 1-based line of the value, when it is written in the file.
        line: Option<usize>,
        /// Path of the field, e.g. `morphologies[2].sigma_x`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The output folder exists and replacing it was not asked for.
    #[error("{path}: already exists (use --force to replace it)", path = path.display())]
    OutputExists {
        /// The output folder.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("{}: PNG encoding failed: {message}", path.display())]
    Png {
        /// The image file.
        path: PathBuf,
        /// What the encoder said.
        message: String,
    },
    /// An image index past the end of the data set.
    #[error("image {index} does not exist: the data set has {len} images")]
    Index {
        /// The index asked for.
        index: usize,
        /// Number of images in the data set.
        len: usize,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// `path:line: field` as a compiler would print it.
struct Location<'a> {
    path: &'a PathBuf,
    line: Option<usize>,
    field: Option<&'a str>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = self.field {
            write!(f, ": {field}")?;
        }
        Ok(())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
