//! The crate's one internal error type. Each variant names the thing that was wrong (a file, an op, a
//! layer) so that a user reading the message can act on it without a backtrace.

use std::path::PathBuf;

/// Errors of the shared core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not describe a valid space, architecture, table or option.
    #[error("{0}")]
    Invalid(String),
    /// A file that exists but whose content is wrong (corrupt JSON, another space, missing entries).
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ONNX Runtime library could not be found or loaded.
    #[error("ONNX Runtime unavailable: {0}")]
    RuntimeUnavailable(String),
    /// ONNX Runtime refused a graph or failed while running it.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A long job (a profile) was cancelled through its flag; what it measured is kept.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Shorthand for [`Error::Invalid`] built from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Bad content in the file at `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
