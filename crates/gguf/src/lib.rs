//! GGUF v2/v3 reader over a memory map, and a writer for test fixtures.
//!
//! Every length, count and offset in the file is checked against the bytes that are
//! really there before it is used, so a truncated or hostile file yields an [`Error`]
//! naming the problem instead of a panic or an out-of-bounds read.

mod cursor;
mod error;
mod file;
mod types;
mod value;
mod writer;

pub use error::{Error, Result};
pub use file::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

/// `GGUF` as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
