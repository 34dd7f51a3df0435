//! Metric names the engine records through the `metrics` facade.

pub const REQUESTS_RUNNING: &str = "autoglm_requests_running";
pub const REQUESTS_WAITING: &str = "autoglm_requests_waiting";
pub const KV_BLOCKS_USED: &str = "autoglm_kv_blocks_used";
pub const KV_BLOCKS_TOTAL: &str = "autoglm_kv_blocks_total";
pub const KV_BLOCKS_CACHED: &str = "autoglm_kv_blocks_cached_free";
pub const PREFIX_QUERIED: &str = "autoglm_prefix_cache_queried_tokens_total";
pub const PREFIX_HIT: &str = "autoglm_prefix_cache_hit_tokens_total";
pub const PROMPT_TOKENS: &str = "autoglm_prompt_tokens_total";
pub const GENERATED_TOKENS: &str = "autoglm_generation_tokens_total";
pub const PREEMPTIONS: &str = "autoglm_preemptions_total";
pub const REQUESTS_FINISHED: &str = "autoglm_requests_finished_total";
/// 1 once the engine loop has failed (a panic); the process should be restarted.
pub const ENGINE_FAILED: &str = "autoglm_engine_failed";
/// Block-pool misuses caught (double release and the like): bugs, expected to stay 0.
pub const KV_BLOCK_ERRORS: &str = "autoglm_kv_block_errors_total";
pub const TTFT: &str = "autoglm_time_to_first_token_seconds";
pub const ITL: &str = "autoglm_inter_token_latency_seconds";
pub const STEP_SECONDS: &str = "autoglm_engine_step_seconds";
pub const STEP_TOKENS: &str = "autoglm_engine_step_tokens";

/// Histogram buckets (seconds) for latency metrics.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for tokens per step.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
