//! The OpenAI Files and Batch API behind `/v1/files` and `/v1/batches`, and the offline
//! `autoglm run-batch`: a durable store (`store.rs`: SQLite for files, batches and which
//! lines are done; JSONL files beside it), the input validation that runs before
//! anything else (`validate.rs`), and the runner (`runner.rs`) that feeds a batch's
//! lines to a [`LineExecutor`] — the server's own generation path — a few at a time,
//! committing each finished line before it counts.

mod error;
mod runner;
mod store;
mod types;
mod validate;

pub use error::{Error, Result};
pub use runner::{describe_metrics, LineExecutor, Outcome, Runner, RunnerConfig};
pub use store::{NewBatch, Store};
pub use types::{
    Batch, BatchError, BatchErrors, BatchStatus, Endpoint, FileObject, FilePurpose, RequestCounts,
};
pub use validate::{validate, InputLine, Limits, Validated};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
