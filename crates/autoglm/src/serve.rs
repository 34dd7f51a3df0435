use anyhow::{Context, Result};
use cache::{CacheConfig, ResponseCache};
use engine::metrics_names as m;
use engine::{EngineConfig, EngineHandle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use server::{AppState, ConnLimits, Loaded, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokenizer::ChatTemplate;

/// `autoglm serve`'s flags. Every default comes from the library's own `Default`
/// (`EngineConfig`, `ServerConfig`, `ConnLimits`): one source of defaults.
#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file (default: the pulled default model, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Accepted API key (repeatable). Without any, no authentication is required.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// File with one API key per line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Name reported by /v1/models and expected in requests (default: the file's name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Compute threads (default: all cores, or AUTOGLM_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arith: crate::load::Arithmetic,
    /// Tokens of KV cache (16-bit codes; about 23 KiB per token on the default model).
    #[arg(long, default_value_t = EngineConfig::default().kv_cache_tokens)]
    kv_cache_tokens: usize,
    /// Tokens per KV block.
    #[arg(long, default_value_t = EngineConfig::default().block_size)]
    block_size: usize,
    /// Tokens per engine step while sequences are decoding (decodes plus prefill chunks).
    #[arg(long, default_value_t = EngineConfig::default().max_batch_tokens)]
    max_batch_tokens: usize,
    /// Tokens per engine step when no sequence is decoding (a burst of new prompts).
    #[arg(long, default_value_t = EngineConfig::default().max_prefill_tokens)]
    max_prefill_tokens: usize,
    /// Sequences decoded together.
    #[arg(long, default_value_t = EngineConfig::default().max_seqs)]
    max_seqs: usize,
    /// Requests allowed to wait; beyond that, 429 with Retry-After.
    #[arg(long, default_value_t = EngineConfig::default().max_waiting)]
    max_waiting: usize,
    /// Context length limit (default: the model's).
    #[arg(long)]
    ctx_size: Option<usize>,
    /// Largest accepted request body, bytes.
    #[arg(long, default_value_t = ServerConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = ServerConfig::default().shutdown_grace.as_secs())]
    shutdown_grace_s: u64,
    /// Seconds a client may take to send a request's headers (also how long an idle
    /// kept-alive HTTP/1.1 connection is kept).
    #[arg(long, default_value_t = ConnLimits::default().header_read_timeout.as_secs())]
    header_timeout_s: u64,
    /// Seconds a request body may pause before the request gets 408.
    #[arg(long, default_value_t = ConnLimits::default().body_read_timeout.as_secs())]
    body_timeout_s: u64,
    /// Seconds a connection may sit with no request and no traffic before it is closed.
    #[arg(long, default_value_t = ConnLimits::default().idle_timeout.as_secs())]
    idle_timeout_s: u64,
    /// Connections served at once; more are closed as they arrive.
    #[arg(long, default_value_t = ConnLimits::default().max_connections)]
    max_connections: usize,
    #[command(flatten)]
    cache: CacheArgs,
    /// Names of the serving metrics on /metrics: `autoglm` (autoglm_…) or `vllm`
    /// (vllm:…, for dashboards, routers and autoscalers built for vLLM).
    #[arg(long, value_enum, default_value_t = MetricNamesArg::Autoglm)]
    metrics_names: MetricNamesArg,
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector URL, e.g.
    /// http://127.0.0.1:4318 (a bare host:port gets `/v1/traces`). Off when absent.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    otlp_traces_endpoint: Option<String>,
    /// The share of new traces recorded, 0 to 1. A caller's `traceparent` decides for its
    /// own trace (parent-based sampling).
    #[arg(long, default_value_t = 1.0)]
    otlp_sample_ratio: f64,
    /// Log format: json or text.
    #[arg(long, default_value = "json")]
    log_format: String,
    /// Return the thinking of models that think in `<think>...</think>` as
    /// `reasoning_content`, apart from the answer: `deepseek_r1` (the prompt opens the
    /// block), `qwen3` or `glm45` (the model opens it). Output constraints then hold the
    /// answer only.
    #[arg(long, value_parser = ["deepseek_r1", "qwen3", "glm45"])]
    reasoning_parser: Option<String>,
    #[command(flatten)]
    batch: BatchArgs,
    /// Inter-token latency target, milliseconds: the 95th percentile `--auto-tune` keeps
    /// the step budget under.
    #[arg(long, requires = "auto_tune")]
    slo_itl_ms: Option<u64>,
    /// Time-to-first-token target, milliseconds: with `--auto-tune`, waiting requests
    /// older than half of it let the budget grow closer to the ITL target.
    #[arg(long, requires = "auto_tune")]
    slo_ttft_ms: Option<u64>,
    /// Tune the step budget (and, if that is not enough, admissions) from measured step
    /// times to the SLOs, instead of the fixed --max-batch-tokens (its start value).
    #[arg(long, requires = "slo_itl_ms")]
    auto_tune: bool,
}

/// The Files and Batch API and the priority classes (see README, "Batch jobs").
#[derive(clap::Args, Clone)]
pub struct BatchArgs {
    /// Turn the Files and Batch API off.
    #[arg(long)]
    no_batch: bool,
    /// Where files, batches and their progress are kept (default: $AUTOGLM_HOME/batches).
    #[arg(long)]
    batch_dir: Option<PathBuf>,
    /// Lines of a batch in flight at once.
    #[arg(long, default_value_t = 4)]
    pub batch_concurrency: usize,
    /// Files and batches older than this are deleted (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    batch_retention: Duration,
    /// Largest batch input file, bytes.
    #[arg(long, default_value_t = batch::Limits::default().max_bytes)]
    batch_max_file_bytes: u64,
    /// Tokens per engine step batch lines may take while interactive requests run or
    /// wait (all of the step when none does).
    #[arg(long, default_value_t = EngineConfig::default().batch_tokens_when_busy)]
    pub batch_tokens_when_busy: usize,
    /// Requests whose `priority` is above this run in the batch class. Without it, no
    /// request's priority can put it below batch work.
    #[arg(long)]
    interactive_priority_max: Option<i32>,
}

impl BatchArgs {
    pub fn limits(&self, model_id: &str) -> batch::Limits {
        batch::Limits {
            max_bytes: self.batch_max_file_bytes,
            model_id: model_id.to_string(),
            ..batch::Limits::default()
        }
    }

    /// Opens the store and starts the runner on `state` (unless `--no-batch`).
    fn start(&self, state: &Arc<AppState>) -> Result<()> {
        if self.no_batch {
            return Ok(());
        }
        let dir = self
            .batch_dir
            .clone()
            .unwrap_or_else(|| crate::settings::env().home.join("batches"));
        let store = Arc::new(
            batch::Store::open(&dir)
                .with_context(|| format!("opening the batch store {}", dir.display()))?,
        );
        let runner = batch::Runner::new(
            store,
            Arc::new(server::batch_lines::ServerLines(state.clone())),
            batch::RunnerConfig {
                concurrency: self.batch_concurrency.max(1),
                limits: self.limits(&state.config.model_id),
                retention: Some(self.batch_retention),
            },
        );
        batch::describe_metrics();
        state.set_batches(runner.clone());
        tokio::spawn(runner.run(state.stopping()));
        tracing::info!(dir = %dir.display(), "batch API on");
        Ok(())
    }
}

/// The response cache (see README, "Response cache").
#[derive(clap::Args)]
struct CacheArgs {
    /// Turn the response cache off (no lookups, no stores, no coalescing).
    #[arg(long)]
    no_cache: bool,
    /// Bytes the in-process L1 may hold (0: no L1).
    #[arg(long, default_value_t = CacheConfig::default().l1_bytes)]
    cache_l1_bytes: u64,
    /// L1 eviction policy: tinylfu (admits a new entry only if it is used more often
    /// than the one it evicts) or lru.
    #[arg(long, default_value = "tinylfu")]
    cache_l1_policy: cache::Policy,
    /// How long an entry lives, counted from its generation (e.g. 1h, 90s).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    cache_ttl: Duration,
    /// Redis URL of the shared L2 (e.g. redis://127.0.0.1:6379); without it, L1 only.
    #[arg(long)]
    cache_redis: Option<String>,
    /// Longest wait for any Redis call; beyond it the call counts as a miss.
    #[arg(long, default_value_t = CacheConfig::default().redis_timeout.as_millis() as u64)]
    cache_redis_timeout_ms: u64,
    /// When a new entry reaches Redis: aside (after the answer, on its own task) or
    /// through (before the answer's last byte).
    #[arg(long, default_value = "aside")]
    cache_write: cache::WriteMode,
    /// Who shares entries: key (per API key) or global.
    #[arg(long, default_value = "key")]
    cache_scope: server::CacheScope,
    /// Bytes of answers kept for retries of sampled requests with an Idempotency-Key.
    #[arg(long, default_value_t = CacheConfig::default().idempotency_bytes)]
    idempotency_bytes: u64,
    /// How long such an answer is kept (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    idempotency_ttl: Duration,
    /// Seconds a generation with an Idempotency-Key goes on after its client left, for
    /// the client's retry to attach to it.
    #[arg(long, default_value_t = ServerConfig::default().idempotency_linger.as_secs())]
    idempotency_linger_s: u64,
}

impl CacheArgs {
    fn config(&self) -> Option<CacheConfig> {
        (!self.no_cache).then(|| CacheConfig {
            l1_bytes: self.cache_l1_bytes,
            policy: self.cache_l1_policy,
            ttl: self.cache_ttl,
            redis_url: self.cache_redis.clone(),
            redis_timeout: Duration::from_millis(self.cache_redis_timeout_ms.max(1)),
            write: self.cache_write,
            idempotency_bytes: self.idempotency_bytes,
            idempotency_ttl: self.idempotency_ttl,
        })
    }
}

/// SHA-256 of the model file, read with plain reads (page cache, not this process's RSS).
fn file_digest(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        b.init();
    } else {
        b.json()
            .with_thread_names(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MetricNamesArg {
    Autoglm,
    Vllm,
}

fn model_id(a: &Args) -> String {
    match (&a.served_model_name, &a.model) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
        (None, None) => model::paths::DEFAULT_MODEL_FILE
            .trim_end_matches(".gguf")
            .to_string(),
    }
}

pub fn run(a: Args) -> Result<()> {
    init_logging(&a.log_format);
    let model_id = model_id(&a);
    // Token-count buckets run to the context (vLLM's), or to 128k before the model is read.
    let mut builder = PrometheusBuilder::new().add_global_label("model_name", &model_id);
    for (name, edges) in m::buckets(a.ctx_size.unwrap_or(1 << 17)) {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), &edges)?;
    }
    let metrics = builder
        .set_buckets_for_metric(
            Matcher::Full(cache::metrics_names::HIT_SECONDS.into()),
            cache::metrics_names::HIT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(server::GRAMMAR_COMPILE_SECONDS.into()),
            server::GRAMMAR_COMPILE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(constrain::MASK_SECONDS.into()),
            constrain::MASK_BUCKETS,
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    m::describe();
    let mut keys = a.api_keys.clone();
    if let Some(f) = &a.api_key_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    let cfg = ServerConfig {
        model_id,
        api_keys: keys,
        max_body_bytes: a.max_body_bytes,
        shutdown_grace: Duration::from_secs(a.shutdown_grace_s),
        keep_alive: Duration::from_secs(5),
        limits: ConnLimits {
            header_read_timeout: Duration::from_secs(a.header_timeout_s.max(1)),
            body_read_timeout: Duration::from_secs(a.body_timeout_s.max(1)),
            idle_timeout: Duration::from_secs(a.idle_timeout_s.max(1)),
            max_connections: a.max_connections.max(1),
        },
        cache_scope: a.cache.cache_scope,
        idempotency_linger: Duration::from_secs(a.cache.idempotency_linger_s),
        metric_names: match a.metrics_names {
            MetricNamesArg::Autoglm => server::MetricNames::Autoglm,
            MetricNamesArg::Vllm => server::MetricNames::Vllm,
        },
        reasoning_parser: a
            .reasoning_parser
            .as_deref()
            .and_then(server::reasoning::ReasoningParser::from_name),
        interactive_priority_max: a.batch.interactive_priority_max,
    };
    let cache_cfg = a.cache.config();
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("bad address {}:{}", a.host, a.port))?;
    let engine_cfg = EngineConfig {
        kv_cache_tokens: a.kv_cache_tokens,
        block_size: a.block_size,
        max_batch_tokens: a.max_batch_tokens,
        max_prefill_tokens: a.max_prefill_tokens,
        max_seqs: a.max_seqs,
        max_waiting: a.max_waiting,
        max_context: a.ctx_size,
        batch_tokens_when_busy: a.batch.batch_tokens_when_busy.max(1),
        tuner: match (a.auto_tune, a.slo_itl_ms) {
            (true, Some(itl)) => Some(engine::tuner::TunerConfig {
                slo_itl: Duration::from_millis(itl.max(1)),
                slo_ttft: a.slo_ttft_ms.map(Duration::from_millis),
                min_budget: 16,
                max_budget: a.max_prefill_tokens.max(a.max_batch_tokens),
                max_seqs: a.max_seqs,
            }),
            _ => None,
        },
    };
    // Built before the runtime: the exporter's blocking client may not be made in one.
    let tracing_out = match &a.otlp_traces_endpoint {
        Some(url) => {
            let mut c = server::TracingConfig::new(url.clone());
            c.sample_ratio = a.otlp_sample_ratio;
            let env = crate::settings::env();
            if let Some(name) = &env.otel_service_name {
                c.service_name = name.clone();
            }
            if let Some(q) = env.otel_queue {
                c.queue_capacity = q;
            }
            let t = server::Tracing::start(&c).map_err(anyhow::Error::msg)?;
            tracing::info!(endpoint = %url, sample_ratio = c.sample_ratio, "exporting traces over OTLP/HTTP");
            Some(t)
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tracing_in = tracing_out.clone();
    let served = rt.block_on(async move {
        let cache = match cache_cfg {
            Some(c) => Some(Arc::new(ResponseCache::new(c)?)),
            None => None,
        };
        let state = AppState::with_cache(cfg, Some(metrics), cache);
        if let Some(t) = tracing_in {
            state.set_tracing(t);
        }
        a.batch.start(&state)?;
        let st = state.clone();
        let (model_arg, threads, arith) = (a.model.clone(), a.threads, a.arith);
        // The port is open (health says 503) while the model is fetched and loaded.
        let loader = tokio::task::spawn_blocking(move || {
            load_into(&st, model_arg, threads, arith, engine_cfg)
        });
        let st = state.clone();
        tokio::spawn(async move {
            match loader.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "loading the model failed");
                    std::process::exit(1);
                }
                Err(e) => {
                    tracing::error!(error = %e, "loader panicked");
                    std::process::exit(1);
                }
            }
            let _ = st;
        });
        server::serve(state, addr).await.context("serving")
    });
    drop(rt);
    if let Some(t) = tracing_out {
        t.shutdown(Duration::from_secs(5));
    }
    served
}

/// Loads the model (fetching the default one on first use) and marks `st` ready: the
/// engine, tokenizer, chat template and response-cache fingerprint. Blocking.
pub fn load_into(
    st: &AppState,
    model_arg: Option<PathBuf>,
    threads: Option<usize>,
    arith: crate::load::Arithmetic,
    engine_cfg: EngineConfig,
) -> Result<()> {
    let path = crate::load::model_path(model_arg)?;
    // The cache key needs the file's digest; reading it overlaps the load.
    let digest = {
        let path = path.clone();
        std::thread::spawn(move || file_digest(&path))
    };
    let l = crate::load::load(Some(path), threads, arith)?;
    let template = match l.tokenizer.chat_template() {
        Some(src) => Some(Arc::new(ChatTemplate::new(
            src,
            l.tokenizer.bos_text(),
            l.tokenizer.eos_text(),
        )?)),
        None => None,
    };
    if let Some(t) = &template {
        tracing::info!(
            tool_call_syntax = server::tools::ToolSyntax::detect(t.source()).name(),
            "chat template read"
        );
    }
    let ctx = engine_cfg
        .max_context
        .unwrap_or(l.model.config.context_length)
        .min(l.model.config.context_length);
    let mut model = l.model;
    // Rope settings that depend on the served context (Phi-3's LongRoPE) are fixed
    // before the first token is cached.
    model.use_context(ctx);
    tracing::info!(
        architecture = ?model.config.arch,
        layers = model.config.n_layers,
        "architecture"
    );
    let engine = EngineHandle::start(Arc::new(model), engine_cfg);
    tracing::info!(
        context = ctx,
        kv_blocks = engine.stats().kv_blocks_total,
        "model loaded"
    );
    let digest = digest
        .join()
        .map_err(|_| anyhow::anyhow!("hashing the model file panicked"))??;
    let fingerprint = format!(
        "sha256={digest};activation_bits={};context={}",
        arith.activation_bits,
        engine.context_length()
    );
    st.set_loaded(Loaded {
        engine,
        tokenizer: Arc::new(l.tokenizer),
        template,
        fingerprint,
    });
    Ok(())
}
