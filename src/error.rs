//! The crate's one error type.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure cnn-lstm reports.
///
/// Variants are grouped by failure class, so a caller can decide what to do
/// without parsing messages. Whether retrying can help is said per variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the request (`CNN_LSTM_BACKEND`, `CNN_LSTM_ADAPTER`).
    /// Retrying does not help; install a driver or relax the filter.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The model or option is outside what cnn-lstm supports. Never fits;
    /// retrying does not help.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A size exceeds a device limit and cannot be split to fit. Never fits
    /// on this device; retrying does not help.
    #[error("{what} needs {needed} but the device allows {allowed} ({limit})")]
    LimitExceeded { what: String, limit: String, needed: u64, allowed: u64 },

    /// A WGSL shader failed to compile. A bug in cnn-lstm or the driver.
    #[error("shader {shader} failed to compile: {message}")]
    ShaderCompilation { shader: String, message: String },

    /// wgpu rejected a call (a validation error). A bug in cnn-lstm or the driver.
    #[error("GPU validation error in {label}: {message}")]
    Validation { label: String, message: String },

    /// The device ran out of memory. Retrying with a smaller batch, or after
    /// freeing other GPU work, can help.
    #[error("GPU out of memory in {label} ({bytes} bytes requested)")]
    OutOfMemory { label: String, bytes: u64 },

    /// The device was lost (driver reset, removal). Create a new context.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// Reading a buffer back from the GPU failed or timed out.
    #[error("GPU readback failed: {0}")]
    Map(String),

    /// A model stack is invalid: names the layer, the shape it got, the shape
    /// it needs, and what to change.
    #[error("layer {index} ({name}): {message}")]
    Layer { index: usize, name: String, message: String },

    /// An input tensor does not fit the model.
    #[error("input {what}: expected {expected}, got {got}")]
    Input { what: String, expected: String, got: String },

    /// A weight is missing, extra or misshapen.
    #[error("weight {name}: {message}")]
    Weights { name: String, message: String },

    /// A model, weights or data file could not be parsed.
    #[error("{path}: {message}")]
    Format { path: String, message: String },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Layer`].
    pub fn layer(index: usize, name: &str, message: impl Into<String>) -> Self {
        Error::Layer { index, name: name.to_string(), message: message.into() }
    }

    /// Shorthand for [`Error::Input`].
    pub fn input(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Input { what: what.into(), expected: expected.into(), got: got.into() }
    }

    /// Shorthand for [`Error::Weights`].
    pub fn weights(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Weights { name: name.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Format`].
    pub fn format(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
