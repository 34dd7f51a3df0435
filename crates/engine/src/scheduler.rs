//! The scheduler: a pure state machine over waiting and running sequences and the KV
//! block pool. `schedule(now)` decides a step (who runs, how many tokens, which blocks,
//! who is preempted); `update(plan, output, now)` applies the executor's result (samples,
//! emits, finishes, frees). It does no I/O and reads no clock, so tests drive it step by
//! step with a fake executor.

use crate::block_pool::BlockPool;
use crate::metrics_names as m;
use crate::plan::{ScheduledSeq, StepPlan};
use crate::priority::{interactive_waiting, next_waiting, service_order};
use crate::request::{Event, FinishReason, GenerationRequest, PriorityClass, TokenEvent};
use crate::sequence::Sequence;
use model::{log_softmax_top, Logits, SeqInput, WantLogits};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Tokens per step while sequences are decoding.
    pub max_batch_tokens: usize,
    /// Tokens per step when none is decoding (a burst of prompts prefilled at once).
    pub max_prefill_tokens: usize,
    pub max_seqs: usize,
    /// Context length: a sequence that reaches it finishes with `Length`.
    pub context: usize,
    /// Tokens per step batch-class sequences may take while interactive work is running
    /// or waiting (all of the budget otherwise): what bounds a batch's effect on
    /// interactive inter-token latency.
    pub batch_tokens_when_busy: usize,
}

/// Why a sequence leaves the engine. Every exit goes through `Scheduler::retire`.
#[derive(Clone, Debug, PartialEq)]
pub enum Retire {
    Finished(FinishReason),
    Cancelled,
    /// The step failed (the executor refused the batch): a server error for this
    /// sequence only.
    StepFailed(String),
    /// The engine itself failed.
    EngineFailed(String),
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    pool: BlockPool,
    running: Vec<Sequence>,
    waiting: Vec<Sequence>,
    /// Block-pool misuses seen (bugs); each is also logged. Should stay 0.
    block_errors: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, n_blocks: usize, block_size: usize) -> Self {
        Self {
            cfg: SchedulerConfig {
                max_batch_tokens: cfg.max_batch_tokens.max(1),
                max_prefill_tokens: cfg.max_prefill_tokens.max(cfg.max_batch_tokens).max(1),
                max_seqs: cfg.max_seqs.max(1),
                context: cfg.context,
                batch_tokens_when_busy: cfg.batch_tokens_when_busy.max(1),
            },
            pool: BlockPool::new(n_blocks, block_size),
            running: Vec::new(),
            waiting: Vec::new(),
            block_errors: 0,
        }
    }

    /// Queues a request that arrived at `arrival`. Its events go to `tx`; dropping the
    /// receiver cancels it at the next `schedule`.
    pub fn add(
        &mut self,
        id: u64,
        req: GenerationRequest,
        tx: UnboundedSender<Event>,
        arrival: Instant,
    ) {
        self.waiting.push(Sequence::new(id, req, tx, arrival));
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Replaces the step budget while decoding and the sequence limit (the SLO tuner's
    /// settings; a lower limit stops admissions, it preempts nobody).
    pub fn set_limits(&mut self, max_batch_tokens: usize, max_seqs: usize) {
        self.cfg.max_batch_tokens = max_batch_tokens.max(1);
        self.cfg.max_seqs = max_seqs.max(1);
    }

    /// The queue as the tuner sees it: waiting requests, running sequences still
    /// prefilling, and how long the oldest waiting request has waited.
    pub fn load(&self, now: Instant) -> crate::tuner::Load {
        crate::tuner::Load {
            waiting: self.waiting.len(),
            prefilling: self.running.iter().filter(|s| s.remaining() > 1).count(),
            oldest_wait: self
                .waiting
                .iter()
                .map(|s| now.saturating_duration_since(s.arrival))
                .max()
                .unwrap_or_default(),
        }
    }

    pub fn block_errors(&self) -> u64 {
        self.block_errors
    }

    /// Ids of the running sequences, in no particular order.
    pub fn running_ids(&self) -> Vec<u64> {
        self.running.iter().map(|s| s.id).collect()
    }

    fn release_table(&mut self, s: &mut Sequence) {
        free_blocks(&mut self.pool, &mut self.block_errors, s);
    }

    /// The one exit path: frees the sequence's blocks and tells its caller why it ended.
    fn retire(&mut self, mut s: Sequence, why: Retire) {
        self.release_table(&mut s);
        if matches!(why, Retire::Finished(_) | Retire::Cancelled) {
            record_request_times(&s, Instant::now());
            log_retired(&s, &why);
        }
        let ev = match why {
            Retire::Finished(reason) => {
                metrics::counter!(m::REQUESTS_FINISHED).increment(1);
                Event::Finished {
                    reason,
                    prompt_tokens: s.req.prompt.len(),
                    completion_tokens: s.generated(),
                    cached_tokens: s.cached_tokens,
                }
            }
            Retire::Cancelled => return,
            Retire::StepFailed(message) => Event::Error {
                message,
                engine_failed: false,
            },
            Retire::EngineFailed(message) => Event::Error {
                message,
                engine_failed: true,
            },
        };
        let _ = s.tx.send(ev);
    }

    /// Ends every sequence with an engine failure. Touches no pool state, which a panic
    /// may have left half-updated: only the callers are told.
    pub fn fail_all(&mut self, message: &str) {
        for s in self.running.drain(..).chain(self.waiting.drain(..)) {
            let _ = s.tx.send(Event::Error {
                message: message.to_string(),
                engine_failed: true,
            });
        }
    }

    fn drop_cancelled(&mut self, plan: &mut StepPlan) {
        for list in [true, false] {
            let v = if list {
                &mut self.running
            } else {
                &mut self.waiting
            };
            let mut i = 0;
            let mut gone = Vec::new();
            while i < v.len() {
                if v[i].cancelled() {
                    gone.push(v.remove(i));
                } else {
                    i += 1;
                }
            }
            for s in gone {
                plan.cancelled.push(s.id);
                self.retire(s, Retire::Cancelled);
            }
        }
    }

    fn preempt(&mut self, i: usize) {
        let s = &mut self.running[i];
        free_blocks(&mut self.pool, &mut self.block_errors, s);
        s.preempted += 1;
        metrics::counter!(m::PREEMPTIONS).increment(1);
        if s.traced() {
            let _ = s.tx.send(Event::Preempted { at: Instant::now() });
        }
        let _span = request_span(s).entered();
        tracing::info!(
            computed = s.computed,
            generated = s.generated(),
            times = s.preempted,
            "preempted: its KV blocks were taken back; it waits and recomputes"
        );
    }

    /// A step that carries decodes is capped so that prefill chunks do not stall those
    /// streams for long; one that carries none may prefill a whole burst at once. Closed
    /// loops of clients then stay in step: a burst split over two steps finishes, and
    /// comes back, as two groups, and the second always waits behind the first's prefill.
    fn step_budget(&self) -> usize {
        if self.running.iter().any(|s| s.remaining() == 1) {
            self.cfg.max_batch_tokens
        } else {
            self.cfg.max_prefill_tokens
        }
    }

    /// The step's tokens for the batch class: all of the budget when no interactive
    /// request runs or waits, else `batch_tokens_when_busy`.
    fn batch_allowance(&self, budget: usize) -> usize {
        let busy = interactive_waiting(&self.waiting)
            || self
                .running
                .iter()
                .any(|s| s.req.class == PriorityClass::Interactive);
        if busy {
            self.cfg.batch_tokens_when_busy.min(budget)
        } else {
            budget
        }
    }

    /// When an interactive request waits for a sequence slot or KV blocks that batch
    /// sequences hold, the newest batch sequences give them back (and wait to
    /// recompute): interactive work takes capacity back at once.
    fn make_room_for_interactive(&mut self, now: Instant, preempted: &mut Vec<usize>) {
        let Some(w) = next_waiting(&self.waiting, now) else {
            return;
        };
        if self.waiting[w].req.class != PriorityClass::Interactive {
            return;
        }
        let bs = self.pool.block_size();
        let first_chunk = self.waiting[w].remaining().min(self.cfg.max_prefill_tokens);
        let need = first_chunk.div_ceil(bs) + 1;
        let order = service_order(&self.running);
        for &j in order.iter().rev() {
            let short = self.running.len() - preempted.len() >= self.cfg.max_seqs
                || self.pool.available() < need;
            if !short {
                break;
            }
            if self.running[j].req.class != PriorityClass::Batch || preempted.contains(&j) {
                continue;
            }
            self.preempt(j);
            preempted.push(j);
        }
    }

    /// Plans one step at time `now` (used only for priority aging).
    pub fn schedule(&mut self, now: Instant) -> StepPlan {
        let mut plan = StepPlan::default();
        self.drop_cancelled(&mut plan);
        let bs = self.pool.block_size();
        let mut budget = self.step_budget();
        plan.budget = budget;
        let mut batch_budget = self.batch_allowance(budget);
        let mut preempted: Vec<usize> = Vec::new();
        self.make_room_for_interactive(now, &mut preempted);
        let order = service_order(&self.running);
        let mut planned: Vec<(usize, usize)> = Vec::new();
        // Interactive decodes first, so that a long prefill never stalls running streams;
        // then interactive prefill chunks; then the batch class's, within its allowance.
        for pass in 0..4 {
            let (class, decodes) = match pass {
                0 => (PriorityClass::Interactive, true),
                1 => (PriorityClass::Interactive, false),
                2 => (PriorityClass::Batch, true),
                _ => (PriorityClass::Batch, false),
            };
            for &i in &order {
                let rem = self.running[i].remaining();
                if self.running[i].req.class != class
                    || decodes != (rem == 1)
                    || preempted.contains(&i)
                    || planned.iter().any(|p| p.0 == i)
                {
                    continue;
                }
                let cap = if class == PriorityClass::Batch {
                    budget.min(batch_budget)
                } else {
                    budget
                };
                let chunk = rem.min(cap);
                if chunk == 0 {
                    continue;
                }
                let s = &self.running[i];
                let need = s.table.blocks_short(s.computed + chunk, bs);
                while self.pool.available() < need {
                    // The lowest-priority, newest sequence not yet in this step.
                    let victim = order.iter().rev().copied().find(|&j| {
                        j != i && !preempted.contains(&j) && !planned.iter().any(|p| p.0 == j)
                    });
                    match victim {
                        Some(j) => {
                            self.preempt(j);
                            preempted.push(j);
                        }
                        None => break,
                    }
                }
                if self.pool.available() < need {
                    self.preempt(i);
                    preempted.push(i);
                    continue;
                }
                self.running[i].table.grow(&mut self.pool, need);
                planned.push((i, chunk));
                budget -= chunk;
                if class == PriorityClass::Batch {
                    batch_budget -= chunk;
                }
            }
        }
        // Preempted sequences wait again and will recompute (often from the prefix cache).
        preempted.sort_unstable();
        for &i in preempted.iter().rev() {
            let s = self.running.remove(i);
            for p in planned.iter_mut() {
                if p.0 > i {
                    p.0 -= 1;
                }
            }
            plan.preempted.push(s.id);
            self.waiting.push(s);
        }
        self.admit(now, &mut budget, &mut batch_budget, &mut planned, &mut plan);
        plan.seqs = planned
            .into_iter()
            .map(|(i, chunk)| {
                let s = &self.running[i];
                let end = s.computed + chunk;
                ScheduledSeq {
                    seq_id: s.id,
                    index: i,
                    start: s.computed,
                    len: chunk,
                    logits: if end == s.tokens.len() {
                        WantLogits::Last
                    } else {
                        WantLogits::None
                    },
                }
            })
            .collect();
        plan
    }

    /// Moves waiting requests into the running set while budget, sequence slots and
    /// blocks last, taking what the prefix cache already holds.
    fn admit(
        &mut self,
        now: Instant,
        budget: &mut usize,
        batch_budget: &mut usize,
        planned: &mut Vec<(usize, usize)>,
        plan: &mut StepPlan,
    ) {
        let bs = self.pool.block_size();
        while *budget > 0 && self.running.len() < self.cfg.max_seqs {
            let Some(w) = next_waiting(&self.waiting, now) else {
                break;
            };
            let batch = self.waiting[w].req.class == PriorityClass::Batch;
            // A batch request is admitted only while no interactive one waits (those come
            // first in `next_waiting`), and within the batch allowance.
            let cap = if batch {
                (*budget).min(*batch_budget)
            } else {
                *budget
            };
            if cap == 0 {
                break;
            }
            let mut s = self.waiting.swap_remove(w);
            let first_time = s.preempted == 0;
            let mut matched = s.table.match_prefix(&mut self.pool, &s.tokens);
            let copy = s.table.match_partial(&mut self.pool, &s.tokens, matched);
            if let Some(c) = copy {
                matched += c.len;
                s.pinned = Some(c.src);
            }
            s.computed = matched;
            let chunk = s.remaining().min(cap);
            let need = s.table.blocks_short(s.computed + chunk, bs);
            if self.pool.available() < need {
                self.release_table(&mut s);
                self.waiting.push(s);
                break;
            }
            if let Some(c) = copy {
                plan.copies.push(c);
            }
            if first_time {
                s.cached_tokens = matched;
                s.scheduled_at = Some(now);
                if s.traced() {
                    let _ = s.tx.send(Event::Scheduled { at: now });
                }
                metrics::counter!(m::PREFIX_QUERIES).increment(s.req.prompt.len() as u64);
                metrics::counter!(m::PREFIX_HITS).increment(matched as u64);
                metrics::counter!(m::PROMPT_TOKENS).increment(s.req.prompt.len() as u64);
            }
            s.table.grow(&mut self.pool, need);
            self.running.push(s);
            planned.push((self.running.len() - 1, chunk));
            *budget -= chunk;
            if batch {
                *batch_budget -= chunk;
            }
        }
    }

    /// The executor's inputs for `plan`, in plan order.
    pub fn inputs<'a>(&'a self, plan: &StepPlan) -> Vec<SeqInput<'a>> {
        plan.seqs
            .iter()
            .map(|p| {
                let s = &self.running[p.index];
                debug_assert_eq!(s.id, p.seq_id);
                SeqInput {
                    tokens: &s.tokens[p.start..p.start + p.len],
                    start_pos: p.start,
                    block_table: s.table.blocks(),
                    logits: p.logits,
                }
            })
            .collect()
    }

    /// Applies a step's result: advances every scheduled sequence, samples where the
    /// step produced logits, emits tokens, retires finished sequences. An `Err` fails the
    /// step's sequences (and only them).
    pub fn update(&mut self, plan: StepPlan, out: Result<Logits, String>, now: Instant) {
        // The step's copies have run: their sources need no pin any more.
        for s in &mut self.running {
            if let Some(p) = s.pinned.take() {
                if let Err(e) = self.pool.release(p) {
                    block_error(&mut self.block_errors, e);
                }
            }
        }
        let mut out = match out {
            Ok(o) => o,
            Err(e) => {
                let mut idx: Vec<usize> = plan.seqs.iter().map(|p| p.index).collect();
                idx.sort_unstable();
                for &i in idx.iter().rev() {
                    let s = self.running.remove(i);
                    self.retire(s, Retire::StepFailed(e.clone()));
                }
                return;
            }
        };
        let mut finished: Vec<(usize, FinishReason)> = Vec::new();
        for (bi, p) in plan.seqs.iter().enumerate() {
            let s = &mut self.running[p.index];
            debug_assert_eq!(s.id, p.seq_id);
            s.computed += p.len;
            s.table.register_full(&mut self.pool, &s.tokens, s.computed);
            if s.computed != s.tokens.len() {
                continue;
            }
            let Some(row) = out.last_row_for(bi) else {
                continue;
            };
            if let Some(reason) = sample_one(s, out.row_mut(row), self.cfg.context, now) {
                finished.push((p.index, reason));
            }
        }
        finished.sort_unstable_by_key(|f| f.0);
        for &(i, reason) in finished.iter().rev() {
            let s = self.running.remove(i);
            self.retire(s, Retire::Finished(reason));
        }
    }
}

fn block_error(count: &mut u64, e: crate::error::BlockError) {
    *count += 1;
    metrics::counter!(m::KV_BLOCK_ERRORS).increment(1);
    tracing::error!(error = %e, "KV block bookkeeping error");
}

/// Returns a sequence's blocks (and any pinned copy source) to the pool; it will
/// recompute from scratch (or the prefix cache) if it runs again.
fn free_blocks(pool: &mut BlockPool, errors: &mut u64, s: &mut Sequence) {
    if let Some(p) = s.pinned.take() {
        if let Err(e) = pool.release(p) {
            block_error(errors, e);
        }
    }
    if let Err(e) = s.table.release(pool) {
        block_error(errors, e);
    }
    s.computed = 0;
}

/// Samples the next token of `s` from its logits row (processed in place), emits it, and
/// says whether the sequence is done.
fn sample_one(
    s: &mut Sequence,
    logits: &mut [f32],
    context: usize,
    now: Instant,
) -> Option<FinishReason> {
    // Log-probabilities are the model's own, taken before any processor runs.
    let lp = s.req.logprobs.map(|k| log_softmax_top(logits, k));
    let raw = (lp.is_some() && s.sampler.has_processors()).then(|| logits.to_vec());
    let tok = s.sampler.sample(logits);
    if s.req.stop_tokens.contains(&tok) {
        return Some(FinishReason::Stop);
    }
    s.sampler.accept(tok);
    let ev = match lp {
        Some((lse, top)) => {
            let l = raw.as_deref().unwrap_or(logits)[tok as usize];
            TokenEvent {
                token: tok,
                logprob: Some((l as f64 - lse) as f32),
                top,
            }
        }
        None => TokenEvent {
            token: tok,
            logprob: None,
            top: Vec::new(),
        },
    };
    let _ = s.tx.send(Event::Token(ev));
    match s.last_token_at {
        None => {
            metrics::histogram!(m::TTFT).record(now.duration_since(s.arrival).as_secs_f64());
            s.first_token_at = Some(now);
        }
        Some(t) => metrics::histogram!(m::ITL).record(now.duration_since(t).as_secs_f64()),
    }
    s.last_token_at = Some(now);
    s.tokens.push(tok);
    metrics::counter!(m::GENERATION_TOKENS).increment(1);
    (s.generated() >= s.req.max_tokens || s.tokens.len() >= context).then_some(FinishReason::Length)
}

/// vLLM's per-request latency breakdown, for a sequence that ran: queue (arrival to first
/// step), prefill (first step to first token), decode (first to last token), inference
/// (first step to last token), e2e (arrival to its end), time per output token (decode
/// over the tokens after the first), and its token counts.
fn record_request_times(s: &Sequence, now: Instant) {
    let Some(scheduled) = s.scheduled_at else {
        return;
    };
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    metrics::histogram!(m::QUEUE).record(secs(s.arrival, scheduled));
    metrics::histogram!(m::E2E).record(secs(s.arrival, now));
    metrics::histogram!(m::REQUEST_PROMPT_TOKENS).record(s.req.prompt.len() as f64);
    metrics::histogram!(m::REQUEST_GENERATION_TOKENS).record(s.generated() as f64);
    metrics::histogram!(m::REQUEST_MAX_TOKENS).record(s.req.max_tokens as f64);
    let (Some(first), Some(last)) = (s.first_token_at, s.last_token_at) else {
        return;
    };
    metrics::histogram!(m::PREFILL).record(secs(scheduled, first));
    metrics::histogram!(m::DECODE).record(secs(first, last));
    metrics::histogram!(m::INFERENCE).record(secs(scheduled, last));
    if s.generated() > 1 {
        metrics::histogram!(m::TPOT).record(secs(first, last) / (s.generated() - 1) as f64);
    }
}

/// The span of the HTTP request a sequence serves, so engine-thread log lines carry the
/// request and trace ids like the server's.
fn request_span(s: &Sequence) -> tracing::Span {
    match &s.req.tag {
        Some(t) => {
            tracing::info_span!("request", request_id = %t.request_id, trace_id = %t.trace_id, seq = s.id)
        }
        None => tracing::info_span!("sequence", seq = s.id),
    }
}

/// One line per sequence that ran: how it ended and where its time went.
fn log_retired(s: &Sequence, why: &Retire) {
    let Some(scheduled) = s.scheduled_at else {
        return;
    };
    let ms = |a: Instant, b: Option<Instant>| {
        b.map_or(0.0, |b| b.saturating_duration_since(a).as_secs_f64() * 1e3)
    };
    let ended = match why {
        Retire::Finished(FinishReason::Stop) => "stop",
        Retire::Finished(FinishReason::Length) => "length",
        _ => "cancelled",
    };
    let _span = request_span(s).entered();
    tracing::info!(
        ended,
        prompt_tokens = s.req.prompt.len(),
        cached_tokens = s.cached_tokens,
        generated = s.generated(),
        preempted = s.preempted,
        queue_ms = ms(s.arrival, Some(scheduled)),
        prefill_ms = ms(scheduled, s.first_token_at),
        decode_ms = s.first_token_at.map_or(0.0, |f| ms(f, s.last_token_at)),
        "sequence done"
    );
}
