//! Metric names the response cache records through the `metrics` facade.

pub const LOOKUPS: &str = "autoglm_response_cache_lookups_total";
/// Label `level`: `l1` or `l2`.
pub const HITS: &str = "autoglm_response_cache_hits_total";
pub const MISSES: &str = "autoglm_response_cache_misses_total";
pub const BYPASSES: &str = "autoglm_response_cache_bypasses_total";
pub const COALESCED: &str = "autoglm_response_cache_coalesced_total";
/// Label `level`.
pub const STORES: &str = "autoglm_response_cache_stores_total";
/// Label `cause`: `size` (TinyLFU/LRU eviction) or `expired` (TTL).
pub const EVICTIONS: &str = "autoglm_response_cache_evictions_total";
pub const L1_BYTES: &str = "autoglm_response_cache_l1_bytes";
pub const L1_ENTRIES: &str = "autoglm_response_cache_l1_entries";
/// Label `op`: `get` or `set`; `kind`: `timeout`, `error`.
pub const L2_ERRORS: &str = "autoglm_response_cache_l2_errors_total";
/// Values in Redis that were not valid entries (foreign, truncated, another version).
pub const L2_CORRUPT: &str = "autoglm_response_cache_l2_corrupt_total";
/// 1 while Redis answers, 0 during an outage.
pub const L2_HEALTHY: &str = "autoglm_response_cache_l2_healthy";
/// Seconds from the start of a lookup to the entry in hand; label `level`.
pub const HIT_SECONDS: &str = "autoglm_response_cache_hit_seconds";

/// Hit latencies are micro- to milliseconds.
pub const HIT_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,
];

/// HELP text, and zero values so every series exists from the start.
pub fn describe(l2: bool) {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
    describe_counter!(LOOKUPS, "Response-cache lookups (cacheable requests)");
    describe_counter!(HITS, "Response-cache hits, by level");
    describe_counter!(MISSES, "Cacheable requests that ran the model");
    describe_counter!(BYPASSES, "Requests that bypassed the response cache");
    describe_counter!(
        COALESCED,
        "Requests answered by attaching to an identical running generation"
    );
    describe_counter!(STORES, "Responses stored, by level");
    describe_counter!(EVICTIONS, "L1 entries evicted, by cause");
    describe_gauge!(L1_BYTES, Unit::Bytes, "Bytes held by the in-process L1");
    describe_gauge!(L1_ENTRIES, "Entries in the in-process L1");
    describe_counter!(L2_ERRORS, "Failed or timed-out Redis calls");
    describe_counter!(
        L2_CORRUPT,
        "Redis values that were not valid entries (treated as misses)"
    );
    describe_gauge!(
        L2_HEALTHY,
        "1 while the Redis L2 answers, 0 during an outage"
    );
    describe_histogram!(
        HIT_SECONDS,
        Unit::Seconds,
        "Lookup time of response-cache hits"
    );
    counter!(LOOKUPS).absolute(0);
    counter!(MISSES).absolute(0);
    counter!(BYPASSES).absolute(0);
    counter!(COALESCED).absolute(0);
    counter!(L2_CORRUPT).absolute(0);
    for level in ["l1", "l2"] {
        counter!(HITS, "level" => level).absolute(0);
        counter!(STORES, "level" => level).absolute(0);
    }
    for cause in ["size", "expired"] {
        counter!(EVICTIONS, "cause" => cause).absolute(0);
    }
    for op in ["get", "set"] {
        for kind in ["timeout", "error"] {
            counter!(L2_ERRORS, "op" => op, "kind" => kind).absolute(0);
        }
    }
    gauge!(L1_BYTES).set(0.0);
    gauge!(L1_ENTRIES).set(0.0);
    if l2 {
        gauge!(L2_HEALTHY).set(1.0);
    }
}
