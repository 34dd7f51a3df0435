//! The engine: continuous batching of many requests over one model.
//!
//! A plain OS thread runs `loop { plan a step; model.forward(batch); sample; emit }`.
//! Callers talk to it through [`EngineHandle`]: `submit` returns a stream of events, and
//! dropping that stream cancels the request (its KV blocks are freed at the next step).

mod block_pool;
mod engine_loop;
mod handle;
pub mod metrics_names;
mod request;
mod scheduler;
mod sequence;

pub use block_pool::BlockPool;
pub use handle::{EngineConfig, EngineHandle, EngineStats, RequestStream};
pub use request::{Event, FinishReason, GenerationRequest, SubmitError, TokenEvent};
