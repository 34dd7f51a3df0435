use crate::cache_policy::CacheScope;
use crate::flight_item::Item;
use cache::{Flights, ResponseCache};
use engine::EngineHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokenizer::{ChatTemplate, Tokenizer};
use tokio::sync::{watch, Notify};

/// Limits on connections, so that slow or idle clients cannot hold the server.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// A request's headers must arrive within this (HTTP/1.1); it also bounds how long
    /// an idle kept-alive connection waits for its next request.
    pub header_read_timeout: Duration,
    /// The longest pause while a request body is being received.
    pub body_read_timeout: Duration,
    /// An HTTP/2 connection with no stream open for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The id `/v1/models` reports and requests must name (an empty `model` is accepted).
    pub model_id: String,
    /// Accepted bearer tokens; empty means no authentication.
    pub api_keys: Vec<String>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Interval of SSE keep-alive comments while a request waits.
    pub keep_alive: Duration,
    pub limits: ConnLimits,
    /// Who shares response-cache entries.
    pub cache_scope: CacheScope,
    /// How long a generation whose request carried an `Idempotency-Key` goes on after
    /// its client left, so that the client's retry attaches to it.
    pub idempotency_linger: Duration,
    pub metric_names: MetricNames,
    /// Splits `<think>` blocks out of chat answers into `reasoning_content`.
    pub reasoning_parser: Option<crate::reasoning::ReasoningParser>,
    /// Interactive requests whose `priority` exceeds this run in the batch class (the
    /// operator's choice); without it no request can put itself below batch work.
    pub interactive_priority_max: Option<i32>,
}

impl ServerConfig {
    /// The engine class of a request of `class` with `priority`.
    pub fn class_of(&self, class: engine::PriorityClass, priority: i32) -> engine::PriorityClass {
        match self.interactive_priority_max {
            Some(max) if priority > max => engine::PriorityClass::Batch,
            _ => class,
        }
    }
}

/// The names the serving metrics are rendered under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricNames {
    /// `autoglm:…`
    #[default]
    Autoglm,
    /// vLLM's `vllm:…`.
    Vllm,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "model".into(),
            api_keys: Vec::new(),
            max_body_bytes: 4 << 20,
            shutdown_grace: crate::DEFAULT_GRACE,
            keep_alive: Duration::from_secs(5),
            limits: ConnLimits::default(),
            cache_scope: CacheScope::default(),
            idempotency_linger: Duration::from_secs(10),
            metric_names: MetricNames::default(),
            reasoning_parser: None,
            interactive_priority_max: None,
        }
    }
}

/// What exists once the model has loaded.
pub struct Loaded {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<Arc<ChatTemplate>>,
    /// The model file's digest and the engine settings that change outputs: part of
    /// every response-cache key, so entries never cross models or arithmetic.
    pub fingerprint: String,
}

pub struct AppState {
    pub config: ServerConfig,
    pub metrics: Option<PrometheusHandle>,
    /// The response cache; `None` with `--no-cache`.
    pub cache: Option<Arc<ResponseCache>>,
    /// Cacheable generations in flight, for coalescing identical requests.
    pub(crate) flights: Arc<Flights<Item>>,
    loaded: OnceLock<Loaded>,
    shutting_down: AtomicBool,
    /// Generation requests in flight (their responses not yet fully sent).
    active: AtomicUsize,
    idle_notify: Notify,
    /// Turns true when the grace period is over: running streams end with an error.
    cut: watch::Sender<bool>,
    pub created: u64,
    pub(crate) key_digests: Vec<[u8; 32]>,
    /// The live dashboard's recent series and errors.
    pub(crate) recent: crate::dashboard::Recent,
    tracing: OnceLock<Arc<crate::otel::Tracing>>,
    /// The grammar compiler for the loaded vocabulary, built on first use.
    grammars: OnceLock<Result<Arc<constrain::Grammars>, String>>,
    /// The Files and Batch API's store and runner (absent with `--no-batch`).
    batches: OnceLock<Arc<batch::Runner>>,
    /// Turns true when shutdown begins (the batch runner stops taking lines).
    stopping: watch::Sender<bool>,
}

/// Held by a generation request until its response is complete; the drain waits for
/// every one of them.
pub struct ActiveGuard(Arc<AppState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_notify.notify_waiters();
        }
    }
}

impl AppState {
    pub fn new(config: ServerConfig, metrics: Option<PrometheusHandle>) -> Arc<Self> {
        Self::with_cache(config, metrics, None)
    }

    pub fn with_cache(
        config: ServerConfig,
        metrics: Option<PrometheusHandle>,
        cache: Option<Arc<ResponseCache>>,
    ) -> Arc<Self> {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let key_digests = config
            .api_keys
            .iter()
            .map(|k| crate::middleware::digest(k.as_bytes()))
            .collect();
        Arc::new(Self {
            config,
            metrics,
            cache,
            flights: Arc::default(),
            loaded: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            idle_notify: Notify::new(),
            cut: watch::channel(false).0,
            created,
            key_digests,
            recent: Default::default(),
            tracing: OnceLock::new(),
            grammars: OnceLock::new(),
            batches: OnceLock::new(),
            stopping: watch::channel(false).0,
        })
    }

    /// Marks the model ready; `/health` turns 200.
    pub fn set_loaded(&self, l: Loaded) {
        let _ = self.loaded.set(l);
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.get()
    }

    /// Why the engine is down, once it has failed.
    pub fn engine_failure(&self) -> Option<String> {
        self.loaded()?.engine.failure()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.stopping.send_replace(true);
        if let Some(l) = self.loaded() {
            l.engine.begin_shutdown();
        }
    }

    /// The grammar compiler (blocking: the first call builds it from the vocabulary).
    pub(crate) fn grammars(
        &self,
        tok: &Arc<Tokenizer>,
    ) -> Result<Arc<constrain::Grammars>, String> {
        self.grammars
            .get_or_init(|| constrain::Grammars::new(tok.clone()).map(Arc::new))
            .clone()
    }

    /// Serves the Files and Batch API with `runner` (once).
    pub fn set_batches(&self, runner: Arc<batch::Runner>) {
        let _ = self.batches.set(runner);
    }

    pub fn batches(&self) -> Option<&Arc<batch::Runner>> {
        self.batches.get()
    }

    /// Turns true when shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Turns on OpenTelemetry traces for the requests that arrive from now on (once).
    pub fn set_tracing(&self, t: Arc<crate::otel::Tracing>) {
        let _ = self.tracing.set(t);
    }

    pub(crate) fn tracing(&self) -> Option<&crate::otel::Tracing> {
        self.tracing.get().map(|t| &**t)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_request(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    pub fn active_requests(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Returns once no generation request is in flight.
    pub(crate) async fn all_done(&self) {
        loop {
            let n = self.idle_notify.notified();
            if self.active_requests() == 0 {
                return;
            }
            n.await;
        }
    }

    /// Ends every running stream with an error (the grace period is over).
    pub(crate) fn cut_streams(&self) {
        self.cut.send_replace(true);
    }

    pub(crate) fn cut_signal(&self) -> watch::Receiver<bool> {
        self.cut.subscribe()
    }
}
