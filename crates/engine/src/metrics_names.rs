//! Metric names the engine records through the `metrics` facade, their help texts, and
//! their registration at 0 (so every series exists before the first request).
//!
//! The serving set has vLLM's names, types, meanings and buckets (vllm/v1/metrics/
//! loggers.py) with `autoglm_` in place of `vllm:` (promtool rejects colons in metric
//! names: Prometheus keeps them for recording rules); `--metrics-names vllm` renders the
//! set under vLLM's own names (see [`vllm_names`]), so dashboards, routers and autoscalers
//! built for vLLM read autoglm as is. Internals (steps, blocks) have no vLLM twin.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub const REQUESTS_RUNNING: &str = "autoglm_num_requests_running";
pub const REQUESTS_WAITING: &str = "autoglm_num_requests_waiting";
/// KV-cache blocks in use over all blocks, 0 to 1 (vLLM's `kv_cache_usage_perc`).
pub const KV_USAGE: &str = "autoglm_kv_cache_usage_perc";
pub const PREFIX_QUERIES: &str = "autoglm_prefix_cache_queries_total";
pub const PREFIX_HITS: &str = "autoglm_prefix_cache_hits_total";
pub const PREEMPTIONS: &str = "autoglm_num_preemptions_total";
pub const PROMPT_TOKENS: &str = "autoglm_prompt_tokens_total";
pub const GENERATION_TOKENS: &str = "autoglm_generation_tokens_total";
/// Finished requests by `finished_reason` (stop, length, abort); recorded by the server,
/// which knows about stop strings and clients that left.
pub const REQUEST_SUCCESS: &str = "autoglm_request_success_total";
pub const REQUEST_PROMPT_TOKENS: &str = "autoglm_request_prompt_tokens";
pub const REQUEST_GENERATION_TOKENS: &str = "autoglm_request_generation_tokens";
pub const REQUEST_MAX_TOKENS: &str = "autoglm_request_params_max_tokens";
pub const REQUEST_N: &str = "autoglm_request_params_n";
/// The most tokens any choice of a request generated (vLLM's per-request maximum over n).
pub const REQUEST_MAX_GENERATION_TOKENS: &str = "autoglm_request_max_num_generation_tokens";
/// vLLM's `iteration_tokens_total` (a histogram despite its suffix, which promtool
/// rejects on a non-counter; the vLLM rendering restores it).
pub const ITERATION_TOKENS: &str = "autoglm_iteration_tokens";
pub const TTFT: &str = "autoglm_time_to_first_token_seconds";
pub const ITL: &str = "autoglm_inter_token_latency_seconds";
pub const TPOT: &str = "autoglm_time_per_output_token_seconds";
pub const E2E: &str = "autoglm_e2e_request_latency_seconds";
pub const QUEUE: &str = "autoglm_request_queue_time_seconds";
pub const INFERENCE: &str = "autoglm_request_inference_time_seconds";
pub const PREFILL: &str = "autoglm_request_prefill_time_seconds";
pub const DECODE: &str = "autoglm_request_decode_time_seconds";

/// Sequences the engine finished (stop token or length); model runs, for tests and
/// capacity planning. Stop strings and aborts end at the server: see REQUEST_SUCCESS.
pub const REQUESTS_FINISHED: &str = "autoglm_requests_finished_total";
pub const KV_BLOCKS_USED: &str = "autoglm_kv_cache_blocks_used";
pub const KV_BLOCKS: &str = "autoglm_kv_cache_blocks";
pub const KV_BLOCKS_CACHED: &str = "autoglm_kv_cache_blocks_cached_free";
/// 1 once the engine loop has failed (a panic); the process should be restarted.
pub const ENGINE_FAILED: &str = "autoglm_engine_failed";
/// Block-pool misuses caught (double release and the like): bugs, expected to stay 0.
pub const KV_BLOCK_ERRORS: &str = "autoglm_kv_block_errors_total";
pub const STEP_SECONDS: &str = "autoglm_engine_step_seconds";
pub const STEP_SEQUENCES: &str = "autoglm_engine_step_sequences";
pub const STEP_DECODE_TOKENS: &str = "autoglm_engine_step_decode_tokens_total";
pub const STEP_PREFILL_TOKENS: &str = "autoglm_engine_step_prefill_tokens_total";

/// vLLM's TTFT buckets plus 2 s and 3 s, SLO edges it skips (between 1 and 2.5).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 3.0, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's inter-token / time-per-output-token buckets, with 5 ms added below: a CPU
/// decode of a small model takes a few milliseconds, which vLLM's first edge (10 ms)
/// would lump together.
pub const TOKEN_LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
/// vLLM's request-latency buckets (e2e, queue, inference, prefill, decode), with 0.1 s
/// added below for short CPU requests.
pub const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
];
/// vLLM's iteration-token buckets.
pub const ITERATION_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
pub const N_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];
/// Engine step durations.
pub const STEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub const SEQUENCE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// vLLM's 1-2-5 buckets up to `max` (its `build_1_2_5_buckets`), for token counts.
pub fn buckets_1_2_5(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut exp = 1usize;
    loop {
        for m in [1, 2, 5] {
            let v = m * exp;
            if v > max {
                return out;
            }
            out.push(v as f64);
        }
        exp *= 10;
    }
}

/// Every histogram and its buckets (the token-count ones up to `context`).
pub fn buckets(context: usize) -> Vec<(&'static str, Vec<f64>)> {
    let counts = buckets_1_2_5(context.max(1));
    vec![
        (TTFT, TTFT_BUCKETS.to_vec()),
        (ITL, TOKEN_LATENCY_BUCKETS.to_vec()),
        (TPOT, TOKEN_LATENCY_BUCKETS.to_vec()),
        (E2E, REQUEST_LATENCY_BUCKETS.to_vec()),
        (QUEUE, REQUEST_LATENCY_BUCKETS.to_vec()),
        (INFERENCE, REQUEST_LATENCY_BUCKETS.to_vec()),
        (PREFILL, REQUEST_LATENCY_BUCKETS.to_vec()),
        (DECODE, REQUEST_LATENCY_BUCKETS.to_vec()),
        (REQUEST_PROMPT_TOKENS, counts.clone()),
        (REQUEST_GENERATION_TOKENS, counts.clone()),
        (REQUEST_MAX_TOKENS, counts),
        (REQUEST_N, N_BUCKETS.to_vec()),
        (REQUEST_MAX_GENERATION_TOKENS, buckets_1_2_5(context.max(1))),
        (ITERATION_TOKENS, ITERATION_BUCKETS.to_vec()),
        (STEP_SECONDS, STEP_BUCKETS.to_vec()),
        (STEP_SEQUENCES, SEQUENCE_BUCKETS.to_vec()),
    ]
}

pub const FINISHED_REASONS: [&str; 3] = ["stop", "length", "abort"];

/// Help texts, and every series registered at 0.
/// The SLO tuner's current step budget (tokens per step while decoding).
pub const TUNER_BUDGET: &str = "autoglm_tuner_step_budget_tokens";
/// The SLO tuner's current limit on running sequences.
pub const TUNER_MAX_SEQS: &str = "autoglm_tuner_max_seqs";
/// The 95th percentile of recent inter-token intervals the tuner last judged.
pub const TUNER_ITL_P95: &str = "autoglm_tuner_itl_p95_seconds";
/// The mean of recent inter-token intervals the tuner last judged.
pub const TUNER_ITL_MEAN: &str = "autoglm_tuner_itl_mean_seconds";
/// The tuner's decisions, by action.
pub const TUNER_DECISIONS: &str = "autoglm_tuner_decisions_total";

pub fn describe() {
    let g = |n: &'static str, help: &'static str| {
        describe_gauge!(n, help);
        gauge!(n).set(0.0);
    };
    let c = |n: &'static str, help: &'static str| {
        describe_counter!(n, help);
        counter!(n).increment(0);
    };
    let h = |n: &'static str, unit: Option<Unit>, help: &'static str| {
        match unit {
            Some(u) => describe_histogram!(n, u, help),
            None => describe_histogram!(n, help),
        }
        let _ = histogram!(n);
    };
    g(
        REQUESTS_RUNNING,
        "Number of requests in model execution batches.",
    );
    g(
        REQUESTS_WAITING,
        "Number of requests waiting to be processed.",
    );
    g(KV_USAGE, "KV-cache usage. 1 means 100 percent usage.");
    c(
        PREFIX_QUERIES,
        "Prefix cache queries, in terms of number of queried tokens.",
    );
    c(
        PREFIX_HITS,
        "Prefix cache hits, in terms of number of cached tokens.",
    );
    c(
        PREEMPTIONS,
        "Cumulative number of preemption from the engine.",
    );
    c(PROMPT_TOKENS, "Number of prefill tokens processed.");
    c(GENERATION_TOKENS, "Number of generation tokens processed.");
    describe_counter!(REQUEST_SUCCESS, "Count of successfully processed requests.");
    for reason in FINISHED_REASONS {
        counter!(REQUEST_SUCCESS, "finished_reason" => reason).increment(0);
    }
    h(
        REQUEST_PROMPT_TOKENS,
        None,
        "Number of prefill tokens processed.",
    );
    h(
        REQUEST_GENERATION_TOKENS,
        None,
        "Number of generation tokens processed.",
    );
    h(
        REQUEST_MAX_TOKENS,
        None,
        "Histogram of the max_tokens request parameter.",
    );
    h(REQUEST_N, None, "Histogram of the n request parameter.");
    h(
        REQUEST_MAX_GENERATION_TOKENS,
        None,
        "Histogram of maximum number of requested generation tokens.",
    );
    h(
        ITERATION_TOKENS,
        None,
        "Histogram of number of tokens per engine_step.",
    );
    let s = Some(Unit::Seconds);
    h(TTFT, s, "Histogram of time to first token in seconds.");
    h(ITL, s, "Histogram of inter-token latency in seconds.");
    h(TPOT, s, "Histogram of time per output token in seconds.");
    h(E2E, s, "Histogram of e2e request latency in seconds.");
    h(
        QUEUE,
        s,
        "Histogram of time spent in WAITING phase for request.",
    );
    h(
        INFERENCE,
        s,
        "Histogram of time spent in RUNNING phase for request.",
    );
    h(
        PREFILL,
        s,
        "Histogram of time spent in PREFILL phase for request.",
    );
    h(
        DECODE,
        s,
        "Histogram of time spent in DECODE phase for request.",
    );
    c(
        REQUESTS_FINISHED,
        "Sequences the engine ran to a stop token or their length.",
    );
    g(KV_BLOCKS_USED, "KV-cache blocks held by running sequences.");
    g(KV_BLOCKS, "KV-cache blocks in the pool.");
    g(
        KV_BLOCKS_CACHED,
        "Free KV-cache blocks that still hold a reusable prefix.",
    );
    g(
        ENGINE_FAILED,
        "1 once the engine loop has failed; restart the process.",
    );
    c(
        KV_BLOCK_ERRORS,
        "Block-pool misuses caught (bugs; expected to stay 0).",
    );
    h(
        STEP_SECONDS,
        s,
        "Duration of one engine step (a batched forward pass).",
    );
    h(
        STEP_SEQUENCES,
        None,
        "Sequences in one engine step (the batch size).",
    );
    c(
        STEP_DECODE_TOKENS,
        "Tokens computed by engine steps as decodes.",
    );
    c(
        STEP_PREFILL_TOKENS,
        "Tokens computed by engine steps as prefill.",
    );
    g(
        TUNER_BUDGET,
        "Tokens per step while decoding, as the SLO tuner set it (0 without --auto-tune).",
    );
    g(
        TUNER_MAX_SEQS,
        "Running sequences allowed, as the SLO tuner set it (0 without --auto-tune).",
    );
    g(
        TUNER_ITL_MEAN,
        "Mean of recent inter-token intervals, which the SLO tuner steers.",
    );
    g(
        TUNER_ITL_P95,
        "95th percentile of recent inter-token intervals, as the SLO tuner last judged them.",
    );
    describe_counter!(TUNER_DECISIONS, "Decisions of the SLO tuner, by action.");
    for a in ["grow", "shrink", "cap_seqs", "open_seqs"] {
        counter!(TUNER_DECISIONS, "action" => a).increment(0);
    }
}

/// The serving set: each name with its vLLM twin.
pub const VLLM_TWINS: &[(&str, &str)] = &[
    (REQUESTS_RUNNING, "vllm:num_requests_running"),
    (REQUESTS_WAITING, "vllm:num_requests_waiting"),
    (KV_USAGE, "vllm:kv_cache_usage_perc"),
    (PREFIX_QUERIES, "vllm:prefix_cache_queries_total"),
    (PREFIX_HITS, "vllm:prefix_cache_hits_total"),
    (PREEMPTIONS, "vllm:num_preemptions_total"),
    (PROMPT_TOKENS, "vllm:prompt_tokens_total"),
    (GENERATION_TOKENS, "vllm:generation_tokens_total"),
    (REQUEST_SUCCESS, "vllm:request_success_total"),
    (REQUEST_PROMPT_TOKENS, "vllm:request_prompt_tokens"),
    (REQUEST_GENERATION_TOKENS, "vllm:request_generation_tokens"),
    (REQUEST_MAX_TOKENS, "vllm:request_params_max_tokens"),
    (REQUEST_N, "vllm:request_params_n"),
    (
        REQUEST_MAX_GENERATION_TOKENS,
        "vllm:request_max_num_generation_tokens",
    ),
    (ITERATION_TOKENS, "vllm:iteration_tokens_total"),
    (TTFT, "vllm:time_to_first_token_seconds"),
    (ITL, "vllm:inter_token_latency_seconds"),
    (TPOT, "vllm:time_per_output_token_seconds"),
    (E2E, "vllm:e2e_request_latency_seconds"),
    (QUEUE, "vllm:request_queue_time_seconds"),
    (INFERENCE, "vllm:request_inference_time_seconds"),
    (PREFILL, "vllm:request_prefill_time_seconds"),
    (DECODE, "vllm:request_decode_time_seconds"),
];

fn twin(name: &str) -> Option<String> {
    if let Some((_, v)) = VLLM_TWINS.iter().find(|(a, _)| *a == name) {
        return Some(v.to_string());
    }
    // A histogram's series.
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let (_, v) = VLLM_TWINS.iter().find(|(a, _)| *a == base)?;
        Some(format!("{v}{suffix}"))
    })
}

/// Names vLLM still exports for older dashboards (its own Grafana example reads
/// `gpu_cache_usage_perc`): the same series again under the deprecated name.
const VLLM_DEPRECATED: &[(&str, &str)] = &[
    ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    (
        "vllm:prefix_cache_queries_total",
        "vllm:gpu_prefix_cache_queries_total",
    ),
    (
        "vllm:prefix_cache_hits_total",
        "vllm:gpu_prefix_cache_hits_total",
    ),
];

/// The Prometheus text with the serving set under vLLM's names, plus vLLM's deprecated
/// aliases at the end (a family's lines must stay together). Only metric names are
/// touched (a sample's name, or the name after `# HELP` / `# TYPE`).
pub fn vllm_names(text: &str) -> String {
    let renamed = rename(text);
    let mut aliases = String::new();
    for line in renamed.lines() {
        let rest = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        let end = rest.find(['{', ' ']).unwrap_or(rest.len());
        if let Some((_, old)) = VLLM_DEPRECATED.iter().find(|(n, _)| *n == &rest[..end]) {
            let (head, _) = line.split_at(line.len() - rest.len());
            aliases.push_str(head);
            aliases.push_str(old);
            aliases.push_str(&rest[end..]);
            aliases.push('\n');
        }
    }
    renamed + &aliases
}

fn rename(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        let rest = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        let (head, rest) = line.split_at(line.len() - rest.len());
        let end = rest.find(['{', ' ']).unwrap_or(rest.len());
        out.push_str(head);
        match twin(&rest[..end]) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[..end]),
        }
        out.push_str(&rest[end..]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_names_rename_the_serving_set_and_nothing_else() {
        let text = "# HELP autoglm_num_requests_running Number of requests.\n\
# TYPE autoglm_num_requests_running gauge\n\
autoglm_num_requests_running{model_name=\"autoglm_num_requests_running\"} 0\n\
autoglm_iteration_tokens_bucket{le=\"1\"} 3\n\
# TYPE autoglm_iteration_tokens histogram\n\
autoglm_engine_step_seconds_count 2\n";
        assert_eq!(
            vllm_names(text),
            "# HELP vllm:num_requests_running Number of requests.\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"autoglm_num_requests_running\"} 0\n\
vllm:iteration_tokens_total_bucket{le=\"1\"} 3\n\
# TYPE vllm:iteration_tokens_total histogram\n\
autoglm_engine_step_seconds_count 2\n"
        );
    }

    #[test]
    fn token_count_buckets_are_vllms_1_2_5_series() {
        assert_eq!(buckets_1_2_5(60), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(buckets_1_2_5(8192).last(), Some(&5000.0));
    }
}
