use crate::block_pool::BlockPool;
use crate::handle::{EngineConfig, SharedStats};
use crate::metrics_names as m;
use crate::request::{Event, FinishReason, TokenEvent};
use crate::scheduler::{next_waiting, service_order};
use crate::sequence::Sequence;
use model::{log_softmax_top, KvCache, Model, SeqInput, WantLogits};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const BURST_QUIET: Duration = Duration::from_millis(2);
const BURST_MAX: Duration = Duration::from_millis(10);

pub(crate) enum Command {
    Submit(Box<Sequence>),
}

pub(crate) struct EngineLoop {
    model: Arc<Model>,
    kv: KvCache,
    pool: BlockPool,
    running: Vec<Sequence>,
    waiting: Vec<Sequence>,
    rx: mpsc::Receiver<Command>,
    max_batch_tokens: usize,
    max_prefill_tokens: usize,
    max_seqs: usize,
    context: usize,
    stats: Arc<SharedStats>,
}

impl EngineLoop {
    pub fn new(
        model: Arc<Model>,
        cfg: &EngineConfig,
        context: usize,
        rx: mpsc::Receiver<Command>,
        stats: Arc<SharedStats>,
    ) -> Self {
        let kv = KvCache::new(&model.config, cfg.kv_cache_tokens, cfg.block_size);
        let pool = BlockPool::new(kv.n_blocks, kv.block_size);
        metrics::gauge!(m::KV_BLOCKS_TOTAL).set(kv.n_blocks as f64);
        Self {
            model,
            kv,
            pool,
            running: Vec::new(),
            waiting: Vec::new(),
            rx,
            max_batch_tokens: cfg.max_batch_tokens.max(1),
            max_prefill_tokens: cfg.max_prefill_tokens.max(cfg.max_batch_tokens).max(1),
            max_seqs: cfg.max_seqs.max(1),
            context,
            stats,
        }
    }

    pub fn n_blocks(&self) -> usize {
        self.kv.n_blocks
    }

    pub(crate) fn stats(&self) -> &SharedStats {
        &self.stats
    }

    pub fn run(mut self) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                self.publish();
                match self.rx.recv() {
                    Ok(cmd) => self.intake(cmd),
                    Err(_) => return,
                }
                self.gather_burst();
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.intake(cmd);
            }
            self.step();
            self.publish();
        }
    }

    /// Waking from idle, takes in the rest of a burst before the first step: clients
    /// that finished together (equal lengths, a closed loop) send their next requests
    /// within a few milliseconds, and starting a step on the first of them would make the
    /// others wait for it. Gathers while requests keep coming less than `BURST_QUIET`
    /// apart, for at most `BURST_MAX`; a lone request waits `BURST_QUIET` once.
    fn gather_burst(&mut self) {
        let started = Instant::now();
        while started.elapsed() < BURST_MAX {
            match self.rx.recv_timeout(BURST_QUIET) {
                Ok(cmd) => self.intake(cmd),
                Err(_) => return,
            }
        }
    }

    fn intake(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(seq) => self.waiting.push(*seq),
        }
    }

    fn publish(&self) {
        let s = &self.stats;
        s.running.store(self.running.len(), Ordering::Release);
        // Submissions that arrived during the step are still in the channel and are
        // counted again at the next intake; the handle's early increment covers them
        // only until this store, which is the accuracy a queue limit needs.
        s.waiting.store(self.waiting.len(), Ordering::Release);
        s.kv_used.store(self.pool.used(), Ordering::Release);
        s.kv_cached
            .store(self.pool.cached_free(), Ordering::Release);
        metrics::gauge!(m::REQUESTS_RUNNING).set(self.running.len() as f64);
        metrics::gauge!(m::REQUESTS_WAITING).set(self.waiting.len() as f64);
        metrics::gauge!(m::KV_BLOCKS_USED).set(self.pool.used() as f64);
        metrics::gauge!(m::KV_BLOCKS_CACHED).set(self.pool.cached_free() as f64);
    }

    fn drop_cancelled(&mut self) {
        let pool = &mut self.pool;
        self.running.retain_mut(|s| {
            if s.cancelled() {
                s.release(pool);
                false
            } else {
                true
            }
        });
        self.waiting.retain_mut(|s| {
            if s.cancelled() {
                s.release(pool);
                false
            } else {
                true
            }
        });
    }

    fn preempt(&mut self, i: usize) {
        let s = &mut self.running[i];
        s.release(&mut self.pool);
        s.preempted += 1;
        metrics::counter!(m::PREEMPTIONS).increment(1);
    }

    fn allocate(&mut self, i: usize, n: usize) {
        for _ in 0..n {
            let b = self.pool.allocate().expect("availability was checked");
            self.running[i].blocks.push(b);
        }
    }

    /// A step that carries decodes is capped so that prefill chunks do not stall those
    /// streams for long; one that carries none may prefill a whole burst at once. Closed
    /// loops of clients then stay in step: a burst split over two steps finishes, and
    /// comes back, as two groups, and the second always waits behind the first's prefill.
    fn step_budget(&self) -> usize {
        if self.running.iter().any(|s| s.remaining() == 1) {
            self.max_batch_tokens
        } else {
            self.max_prefill_tokens
        }
    }

    /// Plans and runs one forward step.
    fn step(&mut self) {
        self.drop_cancelled();
        let bs = self.pool.block_size();
        let mut budget = self.step_budget();
        let order = service_order(&self.running);
        let mut planned: Vec<(usize, usize)> = Vec::new();
        let mut preempted: Vec<usize> = Vec::new();
        // Decodes first, so that a long prefill never stalls running streams; then the
        // chunks of prompts still being prefilled.
        for pass in 0..2 {
            for &i in &order {
                let rem = self.running[i].remaining();
                if (pass == 0) != (rem == 1)
                    || preempted.contains(&i)
                    || planned.iter().any(|p| p.0 == i)
                {
                    continue;
                }
                let chunk = rem.min(budget);
                if chunk == 0 {
                    continue;
                }
                let need = self.running[i].blocks_short(self.running[i].computed + chunk, bs);
                while self.pool.available() < need {
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
                self.allocate(i, need);
                planned.push((i, chunk));
                budget -= chunk;
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
            self.waiting.push(s);
        }
        // Admit waiting requests into the remaining budget.
        let now = Instant::now();
        while budget > 0 && self.running.len() < self.max_seqs {
            let Some(w) = next_waiting(&self.waiting, now) else {
                break;
            };
            let mut s = self.waiting.swap_remove(w);
            let first_time = s.preempted == 0;
            let matched = s.match_prefix(&mut self.pool)
                + s.match_partial_block(&mut self.pool, &mut self.kv);
            let chunk = s.remaining().min(budget);
            let need = s.blocks_short(s.computed + chunk, bs);
            if self.pool.available() < need {
                s.release(&mut self.pool);
                self.waiting.push(s);
                break;
            }
            if first_time {
                s.cached_tokens = matched;
                metrics::counter!(m::PREFIX_QUERIED).increment(s.req.prompt.len() as u64);
                metrics::counter!(m::PREFIX_HIT).increment(matched as u64);
                metrics::counter!(m::PROMPT_TOKENS).increment(s.req.prompt.len() as u64);
            }
            self.running.push(s);
            let i = self.running.len() - 1;
            self.allocate(i, need);
            planned.push((i, chunk));
            budget -= chunk;
        }
        if planned.is_empty() {
            return;
        }
        self.forward(&planned);
    }

    fn forward(&mut self, planned: &[(usize, usize)]) {
        let started = Instant::now();
        let inputs: Vec<SeqInput> = planned
            .iter()
            .map(|&(i, chunk)| {
                let s = &self.running[i];
                let end = s.computed + chunk;
                SeqInput {
                    tokens: &s.tokens[s.computed..end],
                    start_pos: s.computed,
                    block_table: &s.blocks,
                    logits: if end == s.tokens.len() {
                        WantLogits::Last
                    } else {
                        WantLogits::None
                    },
                }
            })
            .collect();
        let tokens: usize = planned.iter().map(|p| p.1).sum();
        let result = self.model.forward(&mut self.kv, &inputs);
        self.stats.steps.fetch_add(1, Ordering::AcqRel);
        drop(inputs);
        metrics::histogram!(m::STEP_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::STEP_TOKENS).record(tokens as f64);
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                // A batch the model refuses fails only its own sequences.
                let mut idx: Vec<usize> = planned.iter().map(|p| p.0).collect();
                idx.sort_unstable();
                for &i in idx.iter().rev() {
                    let mut s = self.running.remove(i);
                    let _ = s.tx.send(Event::Error(e.to_string()));
                    s.release(&mut self.pool);
                }
                return;
            }
        };
        let now = Instant::now();
        let mut finished: Vec<(usize, FinishReason)> = Vec::new();
        for (bi, &(i, chunk)) in planned.iter().enumerate() {
            let s = &mut self.running[i];
            s.computed += chunk;
            s.register_full_blocks(&mut self.pool);
            if s.computed != s.tokens.len() {
                continue;
            }
            let Some(logits) = out.last_for(bi) else {
                continue;
            };
            let plen = s.req.prompt.len();
            let (prompt, output) = s.tokens.split_at(plen);
            let tok = s.sampler.sample(logits, prompt, output);
            if s.req.stop_tokens.contains(&tok) {
                finished.push((i, FinishReason::Stop));
                continue;
            }
            let ev = match s.req.logprobs {
                Some(k) => {
                    let (lse, top) = log_softmax_top(logits, k);
                    TokenEvent {
                        token: tok,
                        logprob: Some((logits[tok as usize] as f64 - lse) as f32),
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
                    metrics::histogram!(m::TTFT).record(now.duration_since(s.arrival).as_secs_f64())
                }
                Some(t) => metrics::histogram!(m::ITL).record(now.duration_since(t).as_secs_f64()),
            }
            s.last_token_at = Some(now);
            s.tokens.push(tok);
            metrics::counter!(m::GENERATED_TOKENS).increment(1);
            if s.generated() >= s.req.max_tokens || s.tokens.len() >= self.context {
                finished.push((i, FinishReason::Length));
            }
        }
        finished.sort_unstable_by_key(|f| f.0);
        for &(i, reason) in finished.iter().rev() {
            let mut s = self.running.remove(i);
            let _ = s.tx.send(Event::Finished {
                reason,
                prompt_tokens: s.req.prompt.len(),
                completion_tokens: s.generated(),
                cached_tokens: s.cached_tokens,
            });
            s.release(&mut self.pool);
            metrics::counter!(m::REQUESTS_FINISHED).increment(1);
        }
    }
}
