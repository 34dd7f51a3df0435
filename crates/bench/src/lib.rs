//! `autoglm bench`: measures any OpenAI-compatible endpoint the way `vllm bench serve`
//! does (TTFT, TPOT, ITL, E2E latency, throughput, goodput), under closed-loop,
//! stepped or open-loop (Poisson/gamma) load, and keeps baselines to catch regressions.

mod baseline;
mod charts;
mod client;
mod config;
mod error;
mod prom;
mod report;
mod rng;
mod runner;
mod stats;
mod workload;

pub use baseline::{compare, load_baseline, save_baseline, Comparison};
pub use charts::write_charts;
pub use client::{RequestOutcome, Target};
pub use config::{BenchConfig, Endpoint, LoadShape, Slo, WorkloadKind};
pub use error::{Error, Result};
pub use report::{print_table, write_results, BenchResults, StepReport};
pub use runner::run;
pub use stats::Summary;
