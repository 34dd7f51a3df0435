use crate::engine_loop::{Command, EngineLoop};
use crate::request::{Event, GenerationRequest, SubmitError};
use crate::sequence::Sequence;
use model::Model;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
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
        let vocab = model.config.vocab_size;
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(SharedStats::default());
        let lp = EngineLoop::new(model, &cfg, context, rx, stats.clone());
        let n_blocks = lp.n_blocks();
        std::thread::Builder::new()
            .name("autoglm-engine".into())
            .spawn(move || lp.run())
            .expect("spawning the engine thread");
        Self {
            tx,
            stats,
            next_id: Arc::new(AtomicU64::new(1)),
            cfg: Arc::new(cfg),
            vocab,
            context,
            n_blocks,
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
        self.validate(&req)?;
        if self.stats.shutting_down.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let waiting = self.stats.waiting.load(Ordering::Acquire);
        if waiting >= self.cfg.max_waiting {
            return Err(SubmitError::QueueFull(waiting));
        }
        // Counted here so that a burst is refused before the engine thread sees it.
        self.stats.waiting.fetch_add(1, Ordering::AcqRel);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (etx, erx) = unbounded_channel();
        let seq = Sequence::new(id, req, etx);
        self.tx
            .send(Command::Submit(Box::new(seq)))
            .map_err(|_| SubmitError::ShuttingDown)?;
        Ok(RequestStream { id, rx: erx })
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

impl Drop for EngineLoop {
    fn drop(&mut self) {
        self.stats().stopped.store(true, Ordering::Release);
    }
}
