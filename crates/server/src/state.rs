use engine::EngineHandle;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokenizer::{ChatTemplate, Tokenizer};
use tokio::sync::Notify;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "model".into(),
            api_keys: Vec::new(),
            max_body_bytes: 4 << 20,
            shutdown_grace: crate::DEFAULT_GRACE,
            keep_alive: Duration::from_secs(5),
        }
    }
}

/// What exists once the model has loaded.
pub struct Loaded {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
}

pub struct AppState {
    pub config: ServerConfig,
    pub metrics: Option<PrometheusHandle>,
    loaded: OnceLock<Loaded>,
    shutting_down: AtomicBool,
    shutdown_notify: Notify,
    pub created: u64,
}

impl AppState {
    pub fn new(config: ServerConfig, metrics: Option<PrometheusHandle>) -> Arc<Self> {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Arc::new(Self {
            config,
            metrics,
            loaded: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            created,
        })
    }

    /// Marks the model ready; `/health` turns 200.
    pub fn set_loaded(&self, l: Loaded) {
        let _ = self.loaded.set(l);
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.get()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        if let Some(l) = self.loaded() {
            l.engine.begin_shutdown();
        }
        self.shutdown_notify.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) async fn shutdown_started(&self) {
        loop {
            let n = self.shutdown_notify.notified();
            if self.is_shutting_down() {
                return;
            }
            n.await;
        }
    }
}
