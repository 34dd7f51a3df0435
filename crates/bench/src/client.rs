//! One request against the target, timed the way vLLM's benchmark times it.

use crate::config::Endpoint;
use crate::workload::RequestSpec;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Target {
    client: reqwest::Client,
    pub base_url: String,
    pub api_key: Option<String>,
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
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| crate::Error::Http(e.to_string()))?;
        Ok(Self {
            client,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
            model: cfg.model.clone(),
            endpoint: cfg.endpoint,
            stream: cfg.stream,
            ignore_eos: cfg.ignore_eos,
            temperature: cfg.temperature,
            timeout: cfg.timeout,
        })
    }

    /// The server's Prometheus endpoint: the base URL without its `/v1`, plus `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.base_url.trim_end_matches("/v1"))
    }

    pub async fn get_text(&self, url: &str) -> Option<String> {
        let mut req = self.client.get(url);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let r = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .ok()?
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
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
        let url = format!("{}/{path}", self.base_url);
        let body = self.body(spec);
        let make = || {
            let r = self.client.post(&url).json(&body);
            match &self.api_key {
                Some(k) => r.bearer_auth(k),
                None => r,
            }
        };
        let mut out = RequestOutcome::default();
        let result = tokio::time::timeout(self.timeout, async {
            match self.exchange(make(), start, &mut out).await {
                // A pooled keep-alive connection the server had already closed fails before
                // anything was sent; one retry on a fresh connection is what any client does.
                Err(kind) if kind == "connection" => {
                    out = RequestOutcome::default();
                    self.exchange(make(), start, &mut out).await
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
        req: reqwest::RequestBuilder,
        start: Instant,
        out: &mut RequestOutcome,
    ) -> Result<(), String> {
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                "timeout".to_string()
            } else {
                "connection".to_string()
            }
        })?;
        let status = resp.status();
        out.cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            return Err(format!("http_{}", status.as_u16()));
        }
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
            let v: Value = resp.json().await.map_err(|_| "bad_json".to_string())?;
            out.ttft = Some(start.elapsed().as_secs_f64());
            out.text = text_of(&v).unwrap_or_default();
            usage(&v, out);
            return Ok(());
        }
        let mut body = resp.bytes_stream();
        let mut sse = autoglm_client::sse::SseParser::default();
        let (mut last, mut chunks, mut have_usage, mut done) =
            (None::<Instant>, 0usize, false, false);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|_| "broken_stream".to_string())?;
            // The client crate's parser: one pass per piece (a replay from a cache arrives
            // as one piece of a hundred events).
            for data in sse.push(&piece) {
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(data).map_err(|_| "bad_json".to_string())?;
                if v.get("error").is_some() {
                    return Err("stream_error".into());
                }
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
        }
        if !done {
            return Err("broken_stream".into());
        }
        if !have_usage {
            // Servers without include_usage: one chunk per token is the best estimate.
            out.output_tokens = chunks;
        }
        Ok(())
    }
}
