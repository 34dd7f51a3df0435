#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported weight type {0}: supported are F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K")]
    UnsupportedType(String),
    #[error("weight data has {got} bytes, expected {expected} for {rows}x{cols} {fmt}")]
    BadSize {
        got: usize,
        expected: usize,
        rows: usize,
        cols: usize,
        fmt: &'static str,
    },
    #[error("row length {cols} is not a multiple of the {fmt} block size {block}")]
    RaggedRow {
        cols: usize,
        fmt: &'static str,
        block: usize,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
