//! The one error type of the models crate. Every variant carries what was expected and what was found.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "no model directory at {dir}: expected a directory with config.json, *.safetensors and tokenizer.json \
             (`sieve models pull NAME` fetches models into the cache)"
    )]
    NoModel { dir: PathBuf },

    #[error("model directory {dir}: missing {file} ({expected})")]
    MissingFile { dir: PathBuf, file: String, expected: String },

    #[error("{path}: {message}")]
    Io {
        path: PathBuf,
        message: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: field `{field}`: expected {expected}, found {found}")]
    InvalidConfig { file: PathBuf, field: String, expected: String, found: String },

    #[error("{file}: unsupported architecture {found}; supported: {supported}")]
    UnsupportedArchitecture { file: PathBuf, found: String, supported: String },

    #[error("{file}: not a readable safetensors file: {message}")]
    CorruptWeights { file: PathBuf, message: String },

    #[error("weights in {dir}: tensor `{tensor}` is missing (expected shape {expected})")]
    MissingTensor { dir: PathBuf, tensor: String, expected: String },

    #[error("weights in {dir}: tensor `{tensor}` has shape {found}, expected {expected}")]
    TensorShape { dir: PathBuf, tensor: String, expected: String, found: String },

    #[error("{file}: tokenizer: {message}")]
    Tokenizer { file: PathBuf, message: String },

    #[error("device `{requested}`: {reason}")]
    Device { requested: String, reason: String },

    #[error("invalid input `{field}`: expected {expected}, found {found}")]
    InvalidInput { field: String, expected: String, found: String },

    #[error("fetching a model ({what}) failed: {message} (command: {command})")]
    Fetch { what: String, command: String, message: String },

    #[error("model computation failed: {0}")]
    Compute(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn input(field: &str, expected: impl Into<String>, found: impl ToString) -> Self {
        ModelError::InvalidInput { field: field.to_string(), expected: expected.into(), found: found.to_string() }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
