//! Prometheus text scraped before and after a step, to report what the server saw.

use std::collections::BTreeMap;

/// Sums of every sample per metric name (histogram buckets left out).
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if name.ends_with("_bucket") {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// Counters worth reporting, in the names autoglm, vLLM and llama.cpp use.
const INTERESTING: &[&str] = &[
    "prefix_cache",
    "preempt",
    "prompt_tokens",
    "generation_tokens",
    "tokens_predicted",
    "requests_finished",
    "request_success",
    "cache_hit",
    "num_requests",
    "response_cache",
];

pub fn deltas(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter(|(k, _)| {
            INTERESTING.iter().any(|i| k.contains(i))
                && !k.ends_with("_sum")
                && !k.ends_with("_count")
        })
        .filter_map(|(k, &v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_of_counters() {
        let a = parse("# HELP x\nautoglm_prompt_tokens_total 10\nautoglm_prefix_cache_hits_total 0\nfoo_bucket{le=\"1\"} 3\n");
        let b = parse("autoglm_prompt_tokens_total 25\nautoglm_prefix_cache_hits_total 16\nvllm:num_preemptions_total{model=\"m\"} 2\n");
        let d = deltas(&a, &b);
        assert_eq!(d.get("autoglm_prompt_tokens_total"), Some(&15.0));
        assert_eq!(d.get("autoglm_prefix_cache_hits_total"), Some(&16.0));
        assert_eq!(d.get("vllm:num_preemptions_total"), Some(&2.0));
        assert!(!a.contains_key("foo_bucket"));
    }
}
