//! The engine: continuous batching of many requests over one model.
//!
//! A plain OS thread runs `loop { plan = scheduler.schedule(now); out =
//! executor.forward(plan); scheduler.update(plan, out) }`: the scheduler is pure (tested
//! step by step with a fake executor), the executor is the model behind a trait.
//! Callers talk to it through [`EngineHandle`]: `submit` returns a stream of events, and
//! dropping that stream cancels the request (its KV blocks are freed at the next step).

mod block_pool;
mod block_table;
mod engine_loop;
mod error;
mod executor;
mod handle;
pub mod metrics_names;
mod plan;
mod priority;
mod request;
mod scheduler;
mod sequence;
pub mod tuner;

pub use block_pool::{chain_hash, BlockPool};
pub use block_table::BlockTable;
pub use error::{BlockError, BlockResult};
pub use executor::{Executor, ExecutorInfo, ModelExecutor};
pub use handle::{EngineConfig, EngineHandle, EngineStats, RequestStream};
pub use plan::{BlockCopy, ScheduledSeq, StepPlan};
pub use request::{
    Event, FinishReason, GenerationRequest, PriorityClass, RequestTag, SubmitError, TokenEvent,
};
pub use scheduler::{Retire, Scheduler, SchedulerConfig};
