#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GGUF: {0}")]
    Gguf(#[from] gguf::Error),
    #[error("kernels: {0}")]
    Kernels(#[from] kernels::Error),
    #[error("unsupported architecture {0:?} (supported: {known})", known = crate::arch::SUPPORTED.join(", "))]
    UnsupportedArch(String),
    #[error("tensors this architecture does not use: {0} (the file's general.architecture does not describe it, or it needs a feature this engine lacks)")]
    UnusedTensors(String),
    #[error("tensor {name}: unsupported weight type {ty} (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K)")]
    UnsupportedType { name: String, ty: String },
    #[error("tensor {name}: shape {got:?}, expected {want:?}")]
    Shape {
        name: String,
        got: Vec<u64>,
        want: Vec<u64>,
    },
    #[error("model config: {0}")]
    Config(String),
    #[error("batch: {0}")]
    Batch(String),
}

pub type Result<T> = std::result::Result<T, Error>;
