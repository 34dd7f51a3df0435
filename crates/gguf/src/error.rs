use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic is {0:#010x}, expected 0x46554747 (\"GGUF\")")]
    BadMagic(u32),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated: needed {needed} bytes at offset {offset} while reading {what}, file has {len}")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("invalid {what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("tensor {name}: unknown ggml type id {id}")]
    UnknownTensorType { name: String, id: u32 },
    #[error("metadata key {0} not found")]
    MissingKey(String),
    #[error("metadata key {key}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("tensor {0} not found")]
    MissingTensor(String),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.into(),
        detail: detail.into(),
    }
}
