//! One request against the target, timed the way vLLM's benchmark times it, sent with the
//! `autoglm-client` SDK with its retries off (the bench measures the server, not the
//! client's patience).

use crate::config::Endpoint;
use crate::workload::RequestSpec;
use autoglm_client::{Client, Error, RetryPolicy, Timeouts};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Target {
    client: Client,
    pub base_url: String,
    pub model: Option<String>,
    pub endpoint: Endpoint,
    pub stream: bool,
    pub ignore_eos: bool,
    pub temperature: f64,
    pub timeout: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct RequestOutcome {
    /// `None` on success, else the kind of failure (`http_429`, `timeout`, ...).
    pub error: Option<String>,
    pub ttft: Option<f64>,
    /// Gaps between consecutive streamed chunks that carried text, seconds.
    pub itl: Vec<f64>,
    pub e2e: f64,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub text: String,
    /// The server's `X-Cache` header (autoglm's response cache), when it sent one.
    pub cache: Option<String>,
}

impl RequestOutcome {
    /// vLLM's TPOT: time per output token after the first.
    pub fn tpot(&self) -> Option<f64> {
        match self.ttft {
            Some(t) if self.output_tokens > 1 => {
                Some((self.e2e - t) / (self.output_tokens - 1) as f64)
            }
            _ => None,
        }
    }
}

impl Target {
    pub fn new(cfg: &crate::BenchConfig) -> crate::Result<Self> {
        let base_url = cfg.base_url.trim_end_matches('/').to_string();
        let mut b = Client::builder(&base_url)
            .retry(RetryPolicy::none())
            // Whole-request deadline only: the bench reports slowness, it does not cut it.
            .timeouts(Timeouts {
                connect: Some(Duration::from_secs(10)),
                first_byte: None,
                idle: None,
                total: None,
            })
            // As before the SDK: identity responses, bodies sent as they are.
            .gzip_responses(false)
            .gzip_requests_above(None);
        if let Some(k) = &cfg.api_key {
            b = b.api_key(k);
        }
        let client = b.build().map_err(|e| crate::Error::Http(e.to_string()))?;
        Ok(Self {
            client,
            base_url,
            model: cfg.model.clone(),
            endpoint: cfg.endpoint,
            stream: cfg.stream,
            ignore_eos: cfg.ignore_eos,
            temperature: cfg.temperature,
            timeout: cfg.timeout,
        })
    }

    /// The server's Prometheus text (`/metrics` at its root), when it serves one.
    pub async fn metrics_text(&self) -> Option<String> {
        let r = tokio::time::timeout(Duration::from_secs(10), self.client.get("/metrics"))
            .await
            .ok()?
            .ok()?;
        String::from_utf8(r.bytes().await.ok()?).ok()
    }

    fn body(&self, spec: &RequestSpec) -> Value {
        let mut b = match self.endpoint {
            Endpoint::Chat => {
                json!({"messages": spec.messages.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>()})
            }
            Endpoint::Completions => json!({"prompt": spec.prompt_text()}),
        };
        b["max_tokens"] = json!(spec.max_tokens);
        b["temperature"] = json!(self.temperature);
        if let Some(m) = &self.model {
            b["model"] = json!(m);
        }
        if self.ignore_eos {
            b["ignore_eos"] = json!(true);
        }
        if self.stream {
            b["stream"] = json!(true);
            b["stream_options"] = json!({"include_usage": true});
        }
        b
    }

    /// Sends `spec`; latencies are measured from `start` (the intended send time under
    /// open-loop load, so queueing delay is not hidden).
    pub async fn send(&self, spec: &RequestSpec, start: Instant) -> RequestOutcome {
        let path = match self.endpoint {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
        };
        let body = self.body(spec);
        let mut out = RequestOutcome::default();
        let result = tokio::time::timeout(self.timeout, async {
            match self.exchange(path, &body, start, &mut out).await {
                // A pooled keep-alive connection the server had already closed fails before
                // anything was sent; one retry on a fresh connection is what any client does.
                Err(kind) if kind == "connection" => {
                    out = RequestOutcome::default();
                    self.exchange(path, &body, start, &mut out).await
                }
                r => r,
            }
        })
        .await;
        out.e2e = start.elapsed().as_secs_f64();
        match result {
            Err(_) => out.error = Some("timeout".into()),
            Ok(Err(kind)) => out.error = Some(kind),
            Ok(Ok(())) => {}
        }
        out
    }

    async fn exchange(
        &self,
        path: &str,
        body: &Value,
        start: Instant,
        out: &mut RequestOutcome,
    ) -> Result<(), String> {
        let resp = self.client.post(path, body).await.map_err(error_kind)?;
        out.cache = resp.header("x-cache").map(str::to_string);
        let text_of = |v: &Value| -> Option<String> {
            let c = v.get("choices")?.get(0)?;
            c.get("delta")
                .and_then(|d| d.get("content"))
                .or_else(|| c.get("text"))
                .or_else(|| c.get("message").and_then(|m| m.get("content")))
                .and_then(|t| t.as_str())
                .map(str::to_string)
        };
        let usage = |v: &Value, out: &mut RequestOutcome| {
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                out.prompt_tokens =
                    u.get("prompt_tokens").and_then(|x| x.as_u64()).unwrap_or(0) as usize;
                out.output_tokens = u
                    .get("completion_tokens")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0) as usize;
                true
            } else {
                false
            }
        };
        if !self.stream {
            let v: Value = resp.json().await.map_err(error_kind)?;
            out.ttft = Some(start.elapsed().as_secs_f64());
            out.text = text_of(&v).unwrap_or_default();
            usage(&v, out);
            return Ok(());
        }
        // The SDK's incremental SSE parser: each event as it is parsed (a replay from a
        // cache arrives as one piece of a hundred events).
        let mut events = resp.events::<Value>();
        let (mut last, mut chunks, mut have_usage) = (None::<Instant>, 0usize, false);
        while let Some(v) = events.next().await {
            let v = v.map_err(error_kind)?;
            have_usage |= usage(&v, out);
            if let Some(t) = text_of(&v).filter(|t| !t.is_empty()) {
                let now = Instant::now();
                match last {
                    None => out.ttft = Some(now.duration_since(start).as_secs_f64()),
                    Some(prev) => out.itl.push(now.duration_since(prev).as_secs_f64()),
                }
                last = Some(now);
                chunks += 1;
                out.text.push_str(&t);
            }
        }
        if !have_usage {
            // Servers without include_usage: one chunk per token is the best estimate.
            out.output_tokens = chunks;
        }
        Ok(())
    }
}

/// The bench's name for a failure, as its reports count them.
fn error_kind(e: Error) -> String {
    match e {
        Error::Timeout { .. } => "timeout".into(),
        Error::Connection(_) => "connection".into(),
        Error::Status { status, .. } => format!("http_{status}"),
        Error::Stream(_) => "broken_stream".into(),
        Error::StreamEvent(_) => "stream_error".into(),
        Error::Decode(_) => "bad_json".into(),
        Error::Config(_) => "config".into(),
    }
}
