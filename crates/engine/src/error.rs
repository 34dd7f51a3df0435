/// A misuse of the block pool: a bug in the caller, reported in release builds too, so
/// a double release can never put a block on the free list twice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block {0} does not exist")]
    OutOfRange(u32),
    #[error("block {0} released with no reference left (double release)")]
    DoubleRelease(u32),
    #[error("block {0} retained while on the free list")]
    RetainFree(u32),
}

pub type BlockResult<T> = std::result::Result<T, BlockError>;
