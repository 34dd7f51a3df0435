use crate::engine_loop::{Command, EngineLoop};
use crate::executor::{Executor, ExecutorInfo, ModelExecutor};
use crate::request::{Event, GenerationRequest, SubmitError};
use crate::scheduler::{Scheduler, SchedulerConfig};
use model::Model;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Tokens of KV cache in the block pool.
    pub kv_cache_tokens: usize,
    pub block_size: usize,
    /// Tokens per forward step while sequences are decoding (their tokens plus prefill
    /// chunks): bounds how long a prefill stalls running streams.
    pub max_batch_tokens: usize,
    /// Tokens per forward step when no sequence is decoding: nothing waits on the step,
    /// so a burst of new prompts is prefilled in one step and its requests stay in step.
    pub max_prefill_tokens: usize,
    /// Sequences running at once.
    pub max_seqs: usize,
    /// Requests allowed to wait; more are refused (HTTP 429).
    pub max_waiting: usize,
    /// Context length limit (defaults to the model's).
    pub max_context: Option<usize>,
    /// Tokens per step the batch class may take while interactive work runs or waits.
    pub batch_tokens_when_busy: usize,
    /// Tune the step budget and admissions to these SLOs (`--auto-tune`).
    pub tuner: Option<crate::tuner::TunerConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kv_cache_tokens: 32768,
            block_size: 16,
            max_batch_tokens: 512,
            max_prefill_tokens: 2048,
            max_seqs: 64,
            max_waiting: 256,
            max_context: None,
            // Measured (docs/benchmarks.md): 16 cost interactive requests 1.55× their TTFT
            // p99 and 1.75× their median ITL; 4 costs 1.2× and 1.4×, and the batch got more
            // done beside them (it is preempted less).
            batch_tokens_when_busy: 4,
            tuner: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct SharedStats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub kv_used: AtomicUsize,
    pub kv_cached: AtomicUsize,
    pub steps: AtomicU64,
    pub shutting_down: AtomicBool,
    pub stopped: AtomicBool,
    pub failed: AtomicBool,
    pub failure: Mutex<Option<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_cached: usize,
    pub kv_blocks_total: usize,
    pub block_size: usize,
    /// Forward steps run since the engine started.
    pub steps: u64,
}

/// Cheap to clone; every clone talks to the same engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    stats: Arc<SharedStats>,
    next_id: Arc<AtomicU64>,
    cfg: Arc<EngineConfig>,
    vocab: usize,
    context: usize,
    n_blocks: usize,
    /// The model's compute threads, for their time shares on /metrics.
    pool: Option<Arc<kernels::ThreadPool>>,
}

/// The events of one request. Dropping it cancels the request.
pub struct RequestStream {
    pub id: u64,
    rx: UnboundedReceiver<Event>,
}

impl RequestStream {
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// For synchronous callers (tests, CLI).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// An event already delivered, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl EngineHandle {
    /// Starts the engine thread on `model`.
    pub fn start(model: Arc<Model>, cfg: EngineConfig) -> Self {
        let context = cfg
            .max_context
            .unwrap_or(model.config.context_length)
            .min(model.config.context_length);
        let pool = model.pool.clone();
        let exec = ModelExecutor::new(model, cfg.kv_cache_tokens, cfg.block_size, context);
        let mut h = Self::start_with(exec, cfg);
        h.pool = Some(pool);
        h
    }

    /// Where the compute threads spent their time (none for a test executor).
    pub fn pool_times(&self) -> Option<kernels::PoolTimes> {
        self.pool.as_ref().map(|p| p.times())
    }

    /// Starts the engine thread on any executor (a test double, a model).
    pub fn start_with<E: Executor>(exec: E, cfg: EngineConfig) -> Self {
        let ExecutorInfo {
            vocab_size,
            context_length,
            n_blocks,
            block_size,
        } = exec.info();
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(SharedStats::default());
        let sched = Scheduler::new(
            SchedulerConfig {
                max_batch_tokens: cfg.max_batch_tokens,
                max_prefill_tokens: cfg.max_prefill_tokens,
                max_seqs: cfg.max_seqs,
                context: context_length,
                batch_tokens_when_busy: cfg.batch_tokens_when_busy,
            },
            n_blocks,
            block_size,
        );
        let tuner = cfg
            .tuner
            .clone()
            .map(|t| crate::tuner::Tuner::new(t, cfg.max_batch_tokens));
        let lp = EngineLoop::new(sched, exec, rx, stats.clone(), tuner);
        std::thread::Builder::new()
            .name("autoglm-engine".into())
            .spawn(move || lp.run())
            .expect("spawning the engine thread");
        Self {
            tx,
            stats,
            next_id: Arc::new(AtomicU64::new(1)),
            cfg: Arc::new(EngineConfig { block_size, ..cfg }),
            vocab: vocab_size,
            context: context_length,
            n_blocks,
            pool: None,
        }
    }

    pub fn context_length(&self) -> usize {
        self.context
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Checks a request against the limits that never change, so callers can tell a bad
    /// request (400) from a busy server (429) before queueing.
    pub fn validate(&self, req: &GenerationRequest) -> Result<(), SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(SubmitError::BadToken(t));
        }
        if let Some(&(t, _)) = req
            .sampling
            .logit_bias
            .iter()
            .find(|&&(t, _)| t as usize >= self.vocab)
        {
            return Err(SubmitError::BadBiasToken(t));
        }
        let needed = req.prompt.len() + req.max_tokens;
        if needed > self.context {
            return Err(SubmitError::TooLong {
                prompt: req.prompt.len(),
                max_tokens: req.max_tokens,
                needed,
                limit: self.context,
            });
        }
        let capacity = self.n_blocks * self.cfg.block_size;
        if needed > capacity {
            return Err(SubmitError::ExceedsCache { needed, capacity });
        }
        Ok(())
    }

    pub fn submit(&self, req: GenerationRequest) -> Result<RequestStream, SubmitError> {
        let mut v = self.submit_all(vec![req])?;
        Ok(v.remove(0))
    }

    /// Submits requests that belong together (the `n` choices of one API request):
    /// all are queued or none is.
    pub fn submit_all(
        &self,
        reqs: Vec<GenerationRequest>,
    ) -> Result<Vec<RequestStream>, SubmitError> {
        for r in &reqs {
            self.validate(r)?;
        }
        if let Some(e) = self.failure() {
            return Err(SubmitError::EngineFailed(e));
        }
        if self.stats.shutting_down.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let n = reqs.len();
        // Counted here so that a burst is refused before the engine thread sees it.
        let before = self.stats.waiting.fetch_add(n, Ordering::AcqRel);
        if before + n > self.cfg.max_waiting {
            self.stats.waiting.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::QueueFull(before));
        }
        let arrival = Instant::now();
        let mut streams = Vec::with_capacity(n);
        for req in reqs {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (etx, erx) = unbounded_channel();
            self.tx
                .send(Command::Submit {
                    id,
                    req: Box::new(req),
                    tx: etx,
                    arrival,
                })
                .map_err(|_| match self.failure() {
                    Some(e) => SubmitError::EngineFailed(e),
                    None => SubmitError::ShuttingDown,
                })?;
            streams.push(RequestStream { id, rx: erx });
        }
        Ok(streams)
    }

    /// The engine's failure message, once its loop has panicked.
    pub fn failure(&self) -> Option<String> {
        if !self.stats.failed.load(Ordering::Acquire) {
            return None;
        }
        self.stats
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most requests one submission may hold: more could never all be queued.
    pub fn max_submission(&self) -> usize {
        self.cfg.max_waiting
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.stats.running.load(Ordering::Acquire),
            waiting: self.stats.waiting.load(Ordering::Acquire),
            kv_blocks_used: self.stats.kv_used.load(Ordering::Acquire),
            kv_blocks_cached: self.stats.kv_cached.load(Ordering::Acquire),
            kv_blocks_total: self.n_blocks,
            block_size: self.cfg.block_size,
            steps: self.stats.steps.load(Ordering::Acquire),
        }
    }

    /// Refuse new requests; the running ones continue.
    pub fn begin_shutdown(&self) {
        self.stats.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_idle(&self) -> bool {
        let s = self.stats();
        s.running == 0 && s.waiting == 0
    }
}
