use crate::client::RequestOutcome;
use crate::config::{BenchConfig, LoadShape, Slo};
use crate::stats::Summary;
use crate::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub label: String,
    /// Concurrency (closed loop) or request rate (open loop).
    pub load: f64,
    pub open_loop: bool,
    pub duration_s: f64,
    pub completed: usize,
    pub failed: usize,
    pub errors: BTreeMap<String, usize>,
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2el_ms: Summary,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    /// Requests per second that met every SLO given (None without SLOs).
    pub goodput: Option<f64>,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Deltas of the server's own counters over the step, when it exposes /metrics.
    pub server: Option<BTreeMap<String, f64>>,
    /// Latencies per `X-Cache` outcome (hit-l1, miss, ...), when the server reports one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_cache: BTreeMap<String, CacheGroup>,
    /// E2E latencies of successful requests, seconds (for the histogram chart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub e2e_samples: Vec<f64>,
}

/// Latencies of the requests with one `X-Cache` outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CacheGroup {
    pub ttft_ms: Summary,
    pub e2el_ms: Summary,
}

fn by_cache(ok: &[&RequestOutcome]) -> BTreeMap<String, CacheGroup> {
    let mut groups: BTreeMap<String, Vec<&RequestOutcome>> = BTreeMap::new();
    for o in ok {
        if let Some(c) = &o.cache {
            groups.entry(c.clone()).or_default().push(o);
        }
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let g = CacheGroup {
                ttft_ms: Summary::of_seconds(v.iter().filter_map(|o| o.ttft)),
                e2el_ms: Summary::of_seconds(v.iter().map(|o| o.e2e)),
            };
            (k, g)
        })
        .collect()
}

impl StepReport {
    pub fn new(
        shape: LoadShape,
        outcomes: &[RequestOutcome],
        duration_s: f64,
        slo: &Slo,
        server: Option<BTreeMap<String, f64>>,
    ) -> Self {
        let ok: Vec<&RequestOutcome> = outcomes.iter().filter(|o| o.error.is_none()).collect();
        let mut errors = BTreeMap::new();
        for o in outcomes {
            if let Some(e) = &o.error {
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
        }
        let prompt_tokens: usize = ok.iter().map(|o| o.prompt_tokens).sum();
        let output_tokens: usize = ok.iter().map(|o| o.output_tokens).sum();
        let d = duration_s.max(1e-9);
        let good = slo.is_set().then(|| {
            ok.iter()
                .filter(|o| {
                    slo.ttft_ms
                        .is_none_or(|m| o.ttft.is_some_and(|t| t * 1e3 <= m))
                        && slo
                            .tpot_ms
                            .is_none_or(|m| o.tpot().is_none_or(|t| t * 1e3 <= m))
                        && slo.e2el_ms.is_none_or(|m| o.e2e * 1e3 <= m)
                })
                .count() as f64
                / d
        });
        StepReport {
            label: shape.label(),
            load: shape.x(),
            open_loop: matches!(shape, LoadShape::Open { .. }),
            duration_s,
            completed: ok.len(),
            failed: outcomes.len() - ok.len(),
            errors,
            ttft_ms: Summary::of_seconds(ok.iter().filter_map(|o| o.ttft)),
            tpot_ms: Summary::of_seconds(ok.iter().filter_map(|o| o.tpot())),
            itl_ms: Summary::of_seconds(ok.iter().flat_map(|o| o.itl.iter().copied())),
            e2el_ms: Summary::of_seconds(ok.iter().map(|o| o.e2e)),
            request_throughput: ok.len() as f64 / d,
            output_throughput: output_tokens as f64 / d,
            total_token_throughput: (prompt_tokens + output_tokens) as f64 / d,
            goodput: good,
            prompt_tokens,
            output_tokens,
            server,
            by_cache: by_cache(&ok),
            e2e_samples: ok.iter().map(|o| o.e2e).collect(),
        }
    }

    pub fn error_rate(&self) -> f64 {
        let n = self.completed + self.failed;
        if n == 0 {
            0.0
        } else {
            self.failed as f64 / n as f64
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchResults {
    pub base_url: String,
    pub endpoint: String,
    pub workload: String,
    pub stream: bool,
    pub input_len: usize,
    pub output_len: usize,
    pub unix_time: u64,
    pub command: String,
    pub steps: Vec<StepReport>,
}

impl BenchResults {
    pub fn new(cfg: &BenchConfig, steps: Vec<StepReport>) -> Self {
        Self {
            base_url: cfg.base_url.clone(),
            endpoint: format!("{:?}", cfg.endpoint).to_lowercase(),
            workload: format!("{:?}", cfg.workload),
            stream: cfg.stream,
            input_len: cfg.input_len,
            output_len: cfg.output_len,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            steps,
        }
    }
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

pub fn table(r: &BenchResults) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "load",
        "ok",
        "fail",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "TPOT p50 ms",
        "ITL p50 ms",
        "ITL p99 ms",
        "E2E p50 ms",
        "E2E p99 ms",
        "goodput req/s",
    ]);
    for s in &r.steps {
        t.add_row(vec![
            s.label.clone(),
            s.completed.to_string(),
            s.failed.to_string(),
            format!("{:.2}", s.request_throughput),
            f1(s.output_throughput),
            f1(s.ttft_ms.median),
            f1(s.ttft_ms.p99),
            f1(s.tpot_ms.median),
            f1(s.itl_ms.median),
            f1(s.itl_ms.p99),
            f1(s.e2el_ms.median),
            f1(s.e2el_ms.p99),
            s.goodput.map_or("-".into(), |g| format!("{g:.2}")),
        ]);
    }
    t
}

pub fn print_table(r: &BenchResults) {
    println!("{}", table(r));
    for s in &r.steps {
        if !s.errors.is_empty() {
            println!("{}: errors {:?}", s.label, s.errors);
        }
        for (outcome, g) in &s.by_cache {
            println!(
                "{}: X-Cache {outcome}: {} requests, TTFT p50 {:.2} p99 {:.2} ms, E2E p50 {:.2} p99 {:.2} ms",
                s.label, g.e2el_ms.count, g.ttft_ms.median, g.ttft_ms.p99, g.e2el_ms.median, g.e2el_ms.p99
            );
        }
        if let Some(server) = &s.server {
            if !server.is_empty() {
                let parts: Vec<String> = server.iter().map(|(k, v)| format!("{k} +{v}")).collect();
                println!("{}: server {}", s.label, parts.join(", "));
            }
        }
    }
}

fn markdown(r: &BenchResults) -> String {
    let mut md = format!("# Benchmark\n\nCommand: `{}`\n\nTarget: {} ({}, stream: {}), workload {}, input ~{} words, output {} tokens.\n\n", r.command, r.base_url, r.endpoint, r.stream, r.workload, r.input_len, r.output_len);
    md.push_str("| load | ok | fail | req/s | out tok/s | TTFT p50 | TTFT p99 | TPOT p50 | ITL p50 | ITL p99 | E2E p50 | E2E p99 | goodput |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &r.steps {
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            s.label,
            s.completed,
            s.failed,
            s.request_throughput,
            s.output_throughput,
            s.ttft_ms.median,
            s.ttft_ms.p99,
            s.tpot_ms.median,
            s.itl_ms.median,
            s.itl_ms.p99,
            s.e2el_ms.median,
            s.e2el_ms.p99,
            s.goodput.map_or("-".into(), |g| format!("{g:.2}"))
        ));
    }
    if r.steps.iter().any(|s| !s.by_cache.is_empty()) {
        md.push_str("\n| load | X-Cache | requests | TTFT p50 | TTFT p99 | E2E p50 | E2E p99 |\n|---|---|---|---|---|---|---|\n");
        for s in &r.steps {
            for (outcome, g) in &s.by_cache {
                md.push_str(&format!(
                    "| {} | {outcome} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                    s.label,
                    g.e2el_ms.count,
                    g.ttft_ms.median,
                    g.ttft_ms.p99,
                    g.e2el_ms.median,
                    g.e2el_ms.p99
                ));
            }
        }
    }
    md.push_str("\nLatencies in milliseconds. Charts: throughput.png/svg, latency.png/svg, e2e_histogram.png/svg.\n");
    md
}

/// results.json, results.md and the charts into `dir`.
pub fn write_results(r: &BenchResults, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join("results.md"), markdown(r))?;
    let mut written = vec!["results.json".to_string(), "results.md".to_string()];
    written.extend(crate::charts::write_charts(r, dir)?);
    Ok(written)
}
