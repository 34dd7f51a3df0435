use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Endpoint {
    Chat,
    Completions,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum LoadShape {
    /// A fixed number of clients, each sending its next request when the last finishes.
    Closed { concurrency: usize },
    /// Requests arrive at `rate` per second with gamma inter-arrival times (`burstiness`
    /// 1 is Poisson; smaller is burstier), whether or not earlier ones finished.
    Open { rate: f64, burstiness: f64 },
}

impl LoadShape {
    pub fn label(&self) -> String {
        match self {
            LoadShape::Closed { concurrency } => format!("c={concurrency}"),
            LoadShape::Open { rate, .. } => format!("rate={rate}"),
        }
    }

    /// The x value of charts.
    pub fn x(&self) -> f64 {
        match *self {
            LoadShape::Closed { concurrency } => concurrency as f64,
            LoadShape::Open { rate, .. } => rate,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadKind {
    /// Random prompts of `input_len` words, asking for `output_len` tokens.
    Random,
    /// `prefix_count` distinct system prompts of `prefix_len` words, many questions each.
    SharedPrefix {
        prefix_count: usize,
        prefix_len: usize,
    },
    /// A fraction of requests are exact repeats of earlier ones.
    Repeated { fraction: f64 },
    /// Sessions of `turns` requests, each resending the whole growing conversation.
    Agent { turns: usize },
    /// One JSON object per line: `{"prompt": ...}` or `{"messages": [...]}`, optional
    /// `max_tokens`.
    File(PathBuf),
}

/// Service-level objectives for goodput, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// `ttft:500,tpot:50,e2el:3000`
    pub fn parse(s: &str) -> Result<Self> {
        let mut slo = Slo::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once(':')
                .ok_or_else(|| Error::Config(format!("SLO {part:?} is not name:ms")))?;
            let v: f64 = v
                .parse()
                .map_err(|_| Error::Config(format!("SLO value {v:?} is not a number")))?;
            match k {
                "ttft" => slo.ttft_ms = Some(v),
                "tpot" => slo.tpot_ms = Some(v),
                "e2el" => slo.e2el_ms = Some(v),
                _ => {
                    return Err(Error::Config(format!(
                        "unknown SLO {k:?} (ttft, tpot, e2el)"
                    )))
                }
            }
        }
        Ok(slo)
    }

    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2el_ms.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub endpoint: Endpoint,
    pub stream: bool,
    /// Send `ignore_eos` so outputs run to `output_len` (autoglm, vLLM, llama.cpp honor it).
    pub ignore_eos: bool,
    pub steps: Vec<LoadShape>,
    /// Requests measured per step (after warm-up); at least one of this and `duration`.
    pub requests: Option<usize>,
    pub duration: Option<Duration>,
    pub warmup: usize,
    /// Open loop: at most this many requests in flight; later arrivals wait (and their
    /// latency counts from when they were due).
    pub max_inflight: Option<usize>,
    pub workload: WorkloadKind,
    pub input_len: usize,
    pub output_len: usize,
    pub temperature: f64,
    pub seed: u64,
    pub slo: Slo,
    pub timeout: Duration,
    pub progress: bool,
}

impl BenchConfig {
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(Error::Config("no load steps".into()));
        }
        if self.requests.is_none() && self.duration.is_none() {
            return Err(Error::Config(
                "give --requests and/or --duration so every step ends".into(),
            ));
        }
        for s in &self.steps {
            match *s {
                LoadShape::Closed { concurrency: 0 } => {
                    return Err(Error::Config("concurrency must be positive".into()))
                }
                LoadShape::Open { rate, burstiness } if !(rate > 0.0 && burstiness > 0.0) => {
                    return Err(Error::Config("rate and burstiness must be positive".into()))
                }
                _ => {}
            }
        }
        if !self.base_url.starts_with("http://") {
            // Built without a TLS stack to keep builds small; benchmarks run next to the
            // server (or behind a TLS-terminating proxy's plain-HTTP side).
            return Err(Error::Config(format!(
                "base URL {:?} must start with http:// (https is not supported)",
                self.base_url
            )));
        }
        if matches!(self.workload, WorkloadKind::Agent { .. })
            && self
                .steps
                .iter()
                .any(|s| matches!(s, LoadShape::Open { .. }))
        {
            return Err(Error::Config("the agent workload needs closed-loop load (each turn waits for the reply it resends)".into()));
        }
        Ok(())
    }
}
