//! A Rust client for OpenAI-compatible servers (autoglm's own, vLLM, llama-server, ...):
//! typed requests and responses from the `api` crate, streaming as an async `Stream` of
//! chunks, a timeout per phase (connect, first byte, idle between stream chunks, the whole
//! call), and retries by the table in [`retry`] with full-jitter backoff and a client-wide
//! retry budget. Every attempt of a call carries the same `X-Request-Id` and
//! `Idempotency-Key`, and `X-Attempt: N`.
//!
//! ```no_run
//! # async fn demo() -> autoglm_client::Result<()> {
//! use autoglm_client::Client;
//! use futures::StreamExt;
//! let client = Client::builder("http://127.0.0.1:8000/v1").api_key("sk-local").build()?;
//! let req = api::ChatRequest::from_json(&serde_json::json!({
//!     "messages": [{"role": "user", "content": "Say hi"}],
//!     "max_tokens": 16,
//! })).expect("a valid request");
//! let answer = client.chat(&req).await?;
//! println!("{}", answer.choices[0].message.content.as_deref().unwrap_or_default());
//! let mut chunks = client.chat_stream(&req).await?;
//! while let Some(chunk) = chunks.next().await {
//!     if let Some(text) = chunk?.choices.first().and_then(|c| c.delta.content.clone()) {
//!         print!("{text}");
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod batcher;
mod error;
pub mod retry;
pub mod sse;

pub use error::{Error, Phase, Result};
pub use retry::{RetryBudget, RetryPolicy};

use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeouts per phase; `None` waits for ever.
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    /// From sending a request to its response headers.
    pub first_byte: Option<Duration>,
    /// Between two chunks of a response body.
    pub idle: Option<Duration>,
    /// The whole call: every attempt, the waits between them, and a stream to its end.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Some(Duration::from_secs(5)),
            // A long prompt's prefill precedes the first byte of a non-streaming answer.
            first_byte: Some(Duration::from_secs(600)),
            idle: Some(Duration::from_secs(60)),
            total: None,
        }
    }
}

pub struct ClientBuilder {
    base_url: String,
    api_key: Option<String>,
    headers: Vec<(String, String)>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    http2: bool,
    gzip_above: Option<usize>,
    gzip_responses: bool,
}

impl ClientBuilder {
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// A header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }
    pub fn retry(mut self, p: RetryPolicy) -> Self {
        self.retry = p;
        self
    }
    /// Cleartext HTTP/2 with prior knowledge (h2c): every concurrent call shares one
    /// connection. Off: HTTP/1.1 with a keep-alive pool.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2 = on;
        self
    }
    /// Gzip request bodies of at least this many bytes (`Content-Encoding: gzip`): long
    /// agent conversations shrink several times. `None`: never. Default: 16 KiB.
    pub fn gzip_requests_above(mut self, bytes: Option<usize>) -> Self {
        self.gzip_above = bytes;
        self
    }

    /// Ask for gzip responses (`Accept-Encoding: gzip`) and decode them. Default: on
    /// (servers leave SSE streams uncompressed, so tokens are not held back).
    pub fn gzip_responses(mut self, on: bool) -> Self {
        self.gzip_responses = on;
        self
    }

    pub fn build(self) -> Result<Client> {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| Error::Config(format!("header {k}: {e}")))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| Error::Config(format!("header {k}: {e}")))?;
            headers.insert(name, value);
        }
        if let Some(k) = &self.api_key {
            let v = HeaderValue::from_str(&format!("Bearer {k}"))
                .map_err(|e| Error::Config(format!("api key: {e}")))?;
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut b = reqwest::Client::builder()
            .tcp_nodelay(true)
            .gzip(self.gzip_responses)
            .pool_max_idle_per_host(1024);
        if let Some(t) = self.timeouts.connect {
            b = b.connect_timeout(t);
        }
        if self.http2 {
            b = b.http2_prior_knowledge();
        }
        let http = b.build().map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            http,
            base: self.base_url.trim_end_matches('/').to_string(),
            headers,
            timeouts: self.timeouts,
            budget: Arc::new(RetryBudget::new(&self.retry)),
            retry: self.retry,
            seed: Arc::new(AtomicU64::new(seed())),
            gzip_above: self.gzip_above,
        })
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (std::process::id() as u64).rotate_left(32)) | 1
}

/// Cloning shares the connection pool and the retry budget.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    headers: HeaderMap,
    timeouts: Timeouts,
    retry: RetryPolicy,
    budget: Arc<RetryBudget>,
    seed: Arc<AtomicU64>,
    gzip_above: Option<usize>,
}

/// A request body as sent: JSON, gzipped when large enough.
struct Body {
    bytes: Vec<u8>,
    gzip: bool,
}

/// A stream of typed chunks; ends after `[DONE]`, or with an error.
pub type ChunkStream<T> = BoxStream<'static, Result<T>>;

impl Client {
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key: None,
            headers: Vec::new(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            http2: false,
            gzip_above: Some(16 << 10),
            gzip_responses: true,
        }
    }

    fn body<B: serde::Serialize>(&self, body: &B) -> Result<Body> {
        use std::io::Write;
        let json = serde_json::to_vec(body).map_err(|e| Error::Config(e.to_string()))?;
        if self.gzip_above.is_none_or(|t| json.len() < t) {
            return Ok(Body {
                bytes: json,
                gzip: false,
            });
        }
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&json)
            .and_then(|_| z.finish())
            .map(|bytes| Body { bytes, gzip: true })
            .map_err(|e| Error::Config(format!("gzip: {e}")))
    }

    pub async fn chat(&self, req: &api::ChatRequest) -> Result<api::ChatCompletion> {
        let mut r = req.clone();
        r.fields.stream = false;
        self.json("chat/completions", &r).await
    }

    pub async fn chat_stream(
        &self,
        req: &api::ChatRequest,
    ) -> Result<ChunkStream<api::ChatCompletionChunk>> {
        let mut r = req.clone();
        r.fields.stream = true;
        self.stream("chat/completions", &r).await
    }

    pub async fn completions(&self, req: &api::CompletionRequest) -> Result<api::Completion> {
        let mut r = req.clone();
        r.fields.stream = false;
        self.json("completions", &r).await
    }

    pub async fn completions_stream(
        &self,
        req: &api::CompletionRequest,
    ) -> Result<ChunkStream<api::Completion>> {
        let mut r = req.clone();
        r.fields.stream = true;
        self.stream("completions", &r).await
    }

    /// POSTs any JSON body to `path` with this client's headers, compression, timeouts and
    /// retries, and returns the response with its body unread: for fields and endpoints
    /// the typed calls do not cover, and for tools that read response headers or want
    /// other servers' chunks as plain JSON. `path` is relative to the base URL, or to the
    /// server's root when it starts with `/` (`/metrics`).
    pub async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<Response> {
        let deadline = self.deadline();
        let body = self.body(body)?;
        let inner = self
            .attempts(reqwest::Method::POST, path, Some(body), deadline)
            .await?;
        Ok(self.response(inner, deadline))
    }

    /// GETs `path` (resolved as in [`Client::post`]).
    pub async fn get(&self, path: &str) -> Result<Response> {
        let deadline = self.deadline();
        let inner = self
            .attempts(reqwest::Method::GET, path, None, deadline)
            .await?;
        Ok(self.response(inner, deadline))
    }

    fn response(&self, inner: reqwest::Response, deadline: Option<Instant>) -> Response {
        Response {
            inner,
            timeouts: self.timeouts.clone(),
            deadline,
        }
    }

    fn url(&self, path: &str) -> String {
        match path.strip_prefix('/') {
            Some(rooted) => {
                // The origin of the base URL: scheme://host:port, without its path.
                let after_scheme = self.base.find("://").map_or(0, |i| i + 3);
                let end = self.base[after_scheme..]
                    .find('/')
                    .map_or(self.base.len(), |i| after_scheme + i);
                format!("{}/{rooted}", &self.base[..end])
            }
            None => format!("{}/{path}", self.base),
        }
    }

    pub async fn models(&self) -> Result<api::ModelList> {
        let deadline = self.deadline();
        let resp = self
            .attempts(reqwest::Method::GET, "models", None, deadline)
            .await?;
        read_json(resp, &self.timeouts, deadline).await
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeouts.total.map(|t| Instant::now() + t)
    }

    async fn json<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let deadline = self.deadline();
        let body = self.body(body)?;
        let resp = self
            .attempts(reqwest::Method::POST, path, Some(body), deadline)
            .await?;
        read_json(resp, &self.timeouts, deadline).await
    }

    async fn stream<T: DeserializeOwned + Send + 'static, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<ChunkStream<T>> {
        let deadline = self.deadline();
        let body = self.body(body)?;
        let resp = self
            .attempts(reqwest::Method::POST, path, Some(body), deadline)
            .await?;
        Ok(chunk_stream(resp, self.timeouts.idle, deadline))
    }

    fn uniform(&self) -> f64 {
        // xorshift64* over a shared state: jitter needs spread, not cryptography.
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.seed.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends until a success status, a verdict of never, or the attempts, the budget or
    /// the deadline run out. Returns the response with its body unread.
    async fn attempts(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
        deadline: Option<Instant>,
    ) -> Result<reqwest::Response> {
        let url = self.url(path);
        let id = format!("{:016x}{:016x}", seed(), self.seed.load(Ordering::Relaxed));
        self.budget.on_request();
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .headers(self.headers.clone())
                .header("x-request-id", &id)
                .header("idempotency-key", &id)
                .header("x-attempt", (attempt + 1).to_string());
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.bytes.clone());
                if b.gzip {
                    req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
            }
            let (err, verdict) = match within(
                deadline,
                self.timeouts.first_byte,
                Phase::FirstByte,
                async { req.send().await.map_err(connection_error) },
            )
            .await
            {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let (err, verdict) = status_error(resp, &self.timeouts, deadline).await;
                    (err, verdict)
                }
                Ok(Err(e)) => (e, retry::Verdict::Retry { server_wait: None }),
                Err(
                    e @ Error::Timeout {
                        phase: Phase::Total,
                        ..
                    },
                ) => return Err(e),
                Err(e) => (e, retry::Verdict::Retry { server_wait: None }),
            };
            let retry::Verdict::Retry { server_wait } = verdict else {
                return Err(err);
            };
            if attempt + 1 >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = match server_wait {
                Some(w) if w > self.retry.max_server_wait => return Err(err),
                Some(w) => w,
                None => self.retry.backoff(attempt, self.uniform()),
            };
            if deadline.is_some_and(|d| Instant::now() + wait >= d) || !self.budget.try_spend() {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A successful response with its body unread (from [`Client::post`] / [`Client::get`]).
pub struct Response {
    inner: reqwest::Response,
    timeouts: Timeouts,
    deadline: Option<Instant>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }
    pub async fn bytes(self) -> Result<Vec<u8>> {
        read_body(self.inner, &self.timeouts, self.deadline).await
    }
    pub async fn json<T: DeserializeOwned>(self) -> Result<T> {
        read_json(self.inner, &self.timeouts, self.deadline).await
    }
    /// The body as SSE: each `data:` event parsed as `T` (`serde_json::Value` for any
    /// server's chunks), under the idle timeout, ending after `[DONE]`.
    pub fn events<T: DeserializeOwned + Send + 'static>(self) -> ChunkStream<T> {
        chunk_stream(self.inner, self.timeouts.idle, self.deadline)
    }
}

fn connection_error(e: reqwest::Error) -> Error {
    if e.is_timeout() && e.is_connect() {
        return Error::Timeout {
            phase: Phase::Connect,
            after: Duration::ZERO,
        };
    }
    Error::Connection(e.to_string())
}

/// Runs `f` under the phase's timeout and the call's deadline, whichever is sooner.
async fn within<T>(
    deadline: Option<Instant>,
    phase_limit: Option<Duration>,
    phase: Phase,
    f: impl std::future::Future<Output = T>,
) -> Result<T> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let (limit, which) = match (phase_limit, left) {
        (Some(p), Some(l)) if l < p => (Some(l), Phase::Total),
        (None, Some(l)) => (Some(l), Phase::Total),
        (p, _) => (p, phase),
    };
    match limit {
        None => Ok(f.await),
        Some(t) => tokio::time::timeout(t, f)
            .await
            .map_err(|_| Error::Timeout {
                phase: which,
                after: t,
            }),
    }
}

async fn read_body(
    resp: reqwest::Response,
    timeouts: &Timeouts,
    deadline: Option<Instant>,
) -> Result<Vec<u8>> {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    loop {
        match within(deadline, timeouts.idle, Phase::Idle, body.next()).await? {
            None => return Ok(out),
            Some(Ok(b)) => out.extend_from_slice(&b),
            Some(Err(e)) => return Err(Error::Decode(e.to_string())),
        }
    }
}

async fn read_json<T: DeserializeOwned>(
    resp: reqwest::Response,
    timeouts: &Timeouts,
    deadline: Option<Instant>,
) -> Result<T> {
    let body = read_body(resp, timeouts, deadline).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
}

async fn status_error(
    resp: reqwest::Response,
    timeouts: &Timeouts,
    deadline: Option<Instant>,
) -> (Error, retry::Verdict) {
    let status = resp.status().as_u16();
    let h = resp.headers();
    let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let should_retry = text("x-should-retry").and_then(|v| match v.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    });
    let wait = retry::server_wait(
        text("retry-after").as_deref(),
        text("retry-after-ms").as_deref(),
    );
    let body = read_body(resp, timeouts, deadline)
        .await
        .unwrap_or_default();
    let parsed: Option<Box<api::ErrorBody>> = serde_json::from_slice(&body).ok();
    let message = parsed
        .as_ref()
        .map(|b| b.error.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    (
        Error::Status {
            status,
            message,
            body: parsed,
            retry_after: wait,
        },
        retry::for_status(status, should_retry, wait),
    )
}

struct StreamState {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    parser: sse::SseParser,
    ready: VecDeque<String>,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    done: bool,
}

fn chunk_stream<T: DeserializeOwned + Send + 'static>(
    resp: reqwest::Response,
    idle: Option<Duration>,
    deadline: Option<Instant>,
) -> ChunkStream<T> {
    let st = StreamState {
        body: resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed(),
        parser: sse::SseParser::default(),
        ready: VecDeque::new(),
        idle,
        deadline,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(data) = st.ready.pop_front() {
                if data == "[DONE]" {
                    return None;
                }
                let v: serde_json::Value = match serde_json::from_str(&data) {
                    Ok(v) => v,
                    Err(e) => {
                        st.done = true;
                        return Some((Err(Error::Decode(e.to_string())), st));
                    }
                };
                if let Some(e) = v.get("error") {
                    st.done = true;
                    let msg = e
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("error event")
                        .to_string();
                    return Some((Err(Error::StreamEvent(msg)), st));
                }
                let item = serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()));
                return Some((item, st));
            }
            match within(st.deadline, st.idle, Phase::Idle, st.body.next()).await {
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Ok(Some(Ok(bytes))) => st.ready.extend(st.parser.push(&bytes)),
                Ok(Some(Err(e))) => {
                    st.done = true;
                    return Some((Err(Error::Stream(e.to_string())), st));
                }
                Ok(None) => {
                    st.done = true;
                    return Some((
                        Err(Error::Stream("the stream ended before [DONE]".into())),
                        st,
                    ));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn paths_resolve_against_the_base_url_or_the_servers_root() {
        let c = Client::builder("http://127.0.0.1:8000/v1/")
            .build()
            .unwrap();
        assert_eq!(c.url("models"), "http://127.0.0.1:8000/v1/models");
        assert_eq!(c.url("/metrics"), "http://127.0.0.1:8000/metrics");
        let bare = Client::builder("http://h:1").build().unwrap();
        assert_eq!(bare.url("/metrics"), "http://h:1/metrics");
    }

    #[test]
    fn bodies_from_16_kib_up_are_gzipped_and_decompress_to_the_json() {
        let c = Client::builder("http://127.0.0.1:1/v1").build().unwrap();
        let small = c.body(&serde_json::json!({"t": "x".repeat(1000)})).unwrap();
        assert!(!small.gzip);
        let text = "agent history ".repeat(2000);
        let big = c.body(&serde_json::json!({"t": text})).unwrap();
        assert!(big.gzip && big.bytes.len() * 10 < text.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&big.bytes[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, serde_json::json!({"t": text}).to_string());
        let never = Client::builder("http://127.0.0.1:1/v1")
            .gzip_requests_above(None)
            .build()
            .unwrap();
        assert!(!never.body(&serde_json::json!({"t": text})).unwrap().gzip);
    }
}
