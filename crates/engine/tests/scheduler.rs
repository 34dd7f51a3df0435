//! The scheduler stepped by hand against a fake executor: no model, no threads, no
//! sleeps, no clock but the one the test passes in.
//!
//! The fake executor keeps a fake KV cache (which token sits in which slot) and answers
//! each sequence with a token derived from the whole history it reads back from that
//! cache. A wrong block table, a lost prefix-cache block or a bad partial copy therefore
//! changes the output, and every test compares outputs with the reference computed
//! straight from the tokens.

use engine::{BlockCopy, Event, Executor, ExecutorInfo, Scheduler, SchedulerConfig, StepPlan};
use model::{Logits, SamplingParams, SeqInput, WantLogits};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const VOCAB: usize = 97;

fn next_token(history: impl Iterator<Item = u32>) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (p, t) in history.enumerate() {
        h = (h ^ (t as u64 + ((p as u64) << 32))).wrapping_mul(0x100_0000_01b3);
    }
    (h % VOCAB as u64) as u32
}

/// What the engine must produce for `prompt`, from the tokens alone.
fn reference(prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut t = prompt.to_vec();
    for _ in 0..max_tokens {
        let n = next_token(t.iter().copied());
        t.push(n);
    }
    t[prompt.len()..].to_vec()
}

struct FakeExecutor {
    block_size: usize,
    n_blocks: usize,
    slots: Vec<Option<u32>>,
    fail_next: bool,
}

impl FakeExecutor {
    fn new(n_blocks: usize, block_size: usize) -> Self {
        Self {
            block_size,
            n_blocks,
            slots: vec![None; n_blocks * block_size],
            fail_next: false,
        }
    }

    fn slot(&self, table: &[u32], pos: usize) -> usize {
        table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }
}

impl Executor for FakeExecutor {
    fn info(&self) -> ExecutorInfo {
        ExecutorInfo {
            vocab_size: VOCAB,
            context_length: 4096,
            n_blocks: self.n_blocks,
            block_size: self.block_size,
        }
    }

    fn copy_block_prefix(&mut self, c: &BlockCopy) {
        let bs = self.block_size;
        for i in 0..c.len {
            self.slots[c.dst as usize * bs + i] = self.slots[c.src as usize * bs + i];
        }
    }

    fn forward(&mut self, batch: &[SeqInput]) -> Result<Logits, String> {
        if std::mem::take(&mut self.fail_next) {
            return Err("the fake model refuses this batch".into());
        }
        let mut data = Vec::new();
        let mut rows = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            for (k, &t) in s.tokens.iter().enumerate() {
                let at = self.slot(s.block_table, s.start_pos + k);
                self.slots[at] = Some(t);
            }
            let end = s.start_pos + s.tokens.len();
            if s.logits == WantLogits::Last {
                let mut history = Vec::with_capacity(end);
                for p in 0..end {
                    let t = self.slots[self.slot(s.block_table, p)]
                        .ok_or_else(|| format!("position {p} was never written"))?;
                    history.push(t);
                }
                let mut row = vec![0f32; VOCAB];
                row[next_token(history.into_iter()) as usize] = 1.0;
                data.extend(row);
                rows.push((i, end - 1));
            }
        }
        Ok(Logits {
            data,
            vocab: VOCAB,
            rows,
        })
    }
}

struct Harness {
    sched: Scheduler,
    exec: FakeExecutor,
    now: Instant,
    plans: Vec<StepPlan>,
}

fn request(prompt: Vec<u32>, max_tokens: usize, priority: i32) -> engine::GenerationRequest {
    engine::GenerationRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_tokens: vec![],
        logprobs: None,
        priority,
        class: engine::PriorityClass::Interactive,
        tag: None,
        constraint: None,
    }
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len).map(|j| (i * 31 + j * 7) % VOCAB as u32).collect()
}

impl Harness {
    fn new(n_blocks: usize, max_batch_tokens: usize, max_seqs: usize) -> Self {
        Self {
            sched: Scheduler::new(
                SchedulerConfig {
                    max_batch_tokens,
                    max_prefill_tokens: 2048,
                    max_seqs,
                    context: 4096,
                    batch_tokens_when_busy: 16,
                },
                n_blocks,
                16,
            ),
            exec: FakeExecutor::new(n_blocks, 16),
            now: Instant::now(),
            plans: Vec::new(),
        }
    }

    fn add(&mut self, id: u64, req: engine::GenerationRequest) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        self.sched.add(id, req, tx, self.now);
        rx
    }

    fn step(&mut self) -> StepPlan {
        let plan = self.sched.schedule(self.now);
        for c in &plan.copies {
            self.exec.copy_block_prefix(c);
        }
        if !plan.is_empty() {
            let out = self.exec.forward(&self.sched.inputs(&plan));
            self.sched.update(plan.clone(), out, self.now);
        }
        self.sched.pool().check_invariants().unwrap();
        self.plans.push(plan.clone());
        plan
    }

    fn run_to_idle(&mut self) {
        for _ in 0..100_000 {
            if self.sched.is_idle() {
                return;
            }
            self.step();
        }
        panic!("the scheduler never went idle");
    }
}

/// Tokens and how the request ended.
fn drain(rx: &mut UnboundedReceiver<Event>) -> (Vec<u32>, Option<Event>) {
    let mut toks = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Event::Token(t) => toks.push(t.token),
            other => return (toks, Some(other)),
        }
    }
    (toks, None)
}

fn first_token_step(h: &Harness, id: u64) -> usize {
    h.plans
        .iter()
        .position(|p| {
            p.find(id)
                .is_some_and(|s| s.logits == WantLogits::Last && s.start + s.len > 0)
        })
        .unwrap_or_else(|| panic!("request {id} never sampled"))
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_beside_running_decodes() {
    let mut h = Harness::new(256, 64, 64);
    let a = h.add(1, request(prompt(1, 8), 400, 0));
    h.step();
    let mut b = h.add(2, request(prompt(2, 640), 4, 0));
    let mut chunks = Vec::new();
    loop {
        let p = h.step();
        let a_step = p.find(1).expect("the running stream decodes in every step");
        assert_eq!((a_step.len, p.seqs[0].seq_id), (1, 1), "decodes first");
        assert!(
            p.tokens() <= 64,
            "budget {} exceeded: {}",
            p.budget,
            p.tokens()
        );
        let b_step = p.find(2).unwrap();
        chunks.push(b_step.len);
        if b_step.logits == WantLogits::Last {
            break;
        }
    }
    // 640 tokens in chunks of at most 63 (the decode takes one of the 64): 11 steps.
    assert_eq!(chunks.len(), 11, "{chunks:?}");
    assert_eq!(chunks.iter().sum::<usize>(), 640);
    drop(a);
    h.run_to_idle();
    let (got, end) = drain(&mut b);
    assert_eq!(got, reference(&prompt(2, 640), 4));
    assert!(matches!(end, Some(Event::Finished { .. })));
}

#[test]
fn an_idle_engine_prefills_a_burst_in_one_step() {
    let mut h = Harness::new(256, 64, 64);
    let mut rxs: Vec<_> = (0..8)
        .map(|i| h.add(i, request(prompt(20 + i as u32, 60), 3, 0)))
        .collect();
    let first = h.step();
    assert_eq!(first.budget, 2048, "no decodes yet: the prefill budget");
    assert_eq!(first.seqs.len(), 8);
    assert!(first.seqs.iter().all(|s| s.len == 60));
    let second = h.step();
    assert_eq!(second.budget, 64, "decodes running: the decode budget");
    h.run_to_idle();
    assert_eq!(h.plans.len(), 3, "one prefill step and two decode steps");
    for (i, rx) in rxs.iter_mut().enumerate() {
        assert_eq!(drain(rx).0, reference(&prompt(20 + i as u32, 60), 3));
    }
}

#[test]
fn steps_stay_within_their_token_budget_and_sequence_limit() {
    let mut h = Harness::new(512, 48, 5);
    let mut rxs = Vec::new();
    for i in 0..24u64 {
        rxs.push(h.add(
            i,
            request(
                prompt(i as u32, 10 + (i as u32 * 37) % 150),
                1 + i as usize % 9,
                0,
            ),
        ));
        h.step();
    }
    h.run_to_idle();
    for p in &h.plans {
        assert!(p.tokens() <= p.budget, "{} > {}", p.tokens(), p.budget);
        assert!(p.seqs.len() <= 5);
    }
    for (i, rx) in rxs.iter_mut().enumerate() {
        let len = 10 + (i as u32 * 37) % 150;
        assert_eq!(drain(rx).0, reference(&prompt(i as u32, len), 1 + i % 9));
    }
    assert_eq!(h.sched.pool().used(), 0);
}

#[test]
fn lower_priority_values_run_first_and_waiting_ages() {
    let mut h = Harness::new(256, 64, 1);
    let _blocker = h.add(1, request(prompt(1, 8), 20, 0));
    h.step();
    let _late = h.add(2, request(prompt(2, 8), 2, 10));
    let _urgent = h.add(3, request(prompt(3, 8), 2, -5));
    let _normal = h.add(4, request(prompt(4, 8), 2, 0));
    h.run_to_idle();
    let order: Vec<usize> = [1, 3, 4, 2]
        .iter()
        .map(|&id| first_token_step(&h, id))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "blocker, urgent, normal, late: {order:?}"
    );

    // Aging: every 5 s of waiting improves the effective priority by one, so a priority-3
    // request that has waited 20 s goes before a priority-0 one that just arrived.
    let mut h = Harness::new(256, 64, 1);
    let _blocker = h.add(1, request(prompt(1, 8), 4, 0));
    h.step();
    let _old = h.add(2, request(prompt(2, 8), 2, 3));
    h.now += Duration::from_secs(20);
    let _new = h.add(3, request(prompt(3, 8), 2, 0));
    h.run_to_idle();
    assert!(first_token_step(&h, 2) < first_token_step(&h, 3));
    // Without the wait, the priority-0 request wins.
    let mut h = Harness::new(256, 64, 1);
    let _blocker = h.add(1, request(prompt(1, 8), 4, 0));
    h.step();
    let _old = h.add(2, request(prompt(2, 8), 2, 3));
    let _new = h.add(3, request(prompt(3, 8), 2, 0));
    h.run_to_idle();
    assert!(first_token_step(&h, 3) < first_token_step(&h, 2));
}

#[test]
fn memory_pressure_preempts_and_recomputes_with_the_same_tokens() {
    // 12 blocks of 16 = 192 slots for six requests of 80 tokens each.
    let mut h = Harness::new(12, 512, 64);
    let mut rxs: Vec<_> = (0..6)
        .map(|i| h.add(i, request(prompt(i as u32, 40), 40, 0)))
        .collect();
    h.run_to_idle();
    let preempted: usize = h.plans.iter().map(|p| p.preempted.len()).sum();
    assert!(preempted > 0, "the pool is too small for all six at once");
    // The victim is the newest running sequence, not the one that needs the block.
    let at = h
        .plans
        .iter()
        .position(|p| !p.preempted.is_empty())
        .unwrap();
    let newest = h.plans[at - 1].seqs.iter().map(|s| s.seq_id).max().unwrap();
    assert_eq!(h.plans[at].preempted[0], newest);
    for (i, rx) in rxs.iter_mut().enumerate() {
        let (got, end) = drain(rx);
        assert_eq!(got, reference(&prompt(i as u32, 40), 40), "request {i}");
        assert!(matches!(
            end,
            Some(Event::Finished {
                completion_tokens: 40,
                ..
            })
        ));
    }
    assert_eq!(h.sched.pool().used(), 0);
}

#[test]
fn a_dropped_receiver_cancels_at_the_next_step_and_frees_its_blocks() {
    let mut h = Harness::new(64, 64, 64);
    let rx = h.add(7, request(prompt(7, 40), 1000, 0));
    let mut other = h.add(8, request(prompt(8, 20), 5, 0));
    h.step();
    h.step();
    assert!(h.sched.pool().used() > 0);
    drop(rx);
    let p = h.step();
    assert_eq!(p.cancelled, vec![7]);
    assert!(p.find(7).is_none());
    h.run_to_idle();
    assert_eq!(h.sched.pool().used(), 0);
    assert_eq!(drain(&mut other).0, reference(&prompt(8, 20), 5));
}

#[test]
fn a_failed_step_fails_only_its_sequences() {
    let mut h = Harness::new(64, 64, 64);
    let mut a = h.add(1, request(prompt(1, 10), 3, 0));
    h.exec.fail_next = true;
    h.step();
    let (toks, end) = drain(&mut a);
    assert!(toks.is_empty());
    assert!(
        matches!(
            end,
            Some(Event::Error {
                engine_failed: false,
                ..
            })
        ),
        "{end:?}"
    );
    assert_eq!(h.sched.pool().used(), 0);
    let mut b = h.add(2, request(prompt(2, 10), 3, 0));
    h.run_to_idle();
    assert_eq!(drain(&mut b).0, reference(&prompt(2, 10), 3));
}

#[test]
fn cached_prefixes_skip_prefill_and_a_divergence_inside_a_block_copies_its_slots() {
    let shared = prompt(9, 25);
    let with_tail = |t: u32| {
        let mut p = shared.clone();
        p.extend(prompt(t, 12));
        p
    };
    let mut h = Harness::new(64, 512, 64);
    let mut a = h.add(1, request(with_tail(1), 4, 0));
    h.run_to_idle();
    assert_eq!(drain(&mut a).0, reference(&with_tail(1), 4));
    let mut b = h.add(2, request(with_tail(2), 6, 0));
    let p = h.step();
    // One full block by hash, then 9 slots copied from the first request's second block.
    assert_eq!(p.find(2).unwrap().start, 25);
    assert_eq!(p.copies.len(), 1);
    assert_eq!(p.copies[0].len, 9);
    h.run_to_idle();
    let (got, end) = drain(&mut b);
    assert_eq!(got, reference(&with_tail(2), 6));
    assert!(matches!(
        end,
        Some(Event::Finished {
            cached_tokens: 25,
            ..
        })
    ));
}

fn batch_request(prompt: Vec<u32>, max_tokens: usize, priority: i32) -> engine::GenerationRequest {
    engine::GenerationRequest {
        class: engine::PriorityClass::Batch,
        ..request(prompt, max_tokens, priority)
    }
}

#[test]
fn interactive_work_always_goes_before_batch_work_whatever_the_priorities() {
    // One slot: a batch request that waited longest and asks for priority -100 still
    // runs after an interactive one that asks for +100.
    let mut h = Harness::new(256, 64, 1);
    let _blocker = h.add(1, request(prompt(1, 8), 4, 0));
    h.step();
    let _batch = h.add(2, batch_request(prompt(2, 8), 2, -100));
    h.now += Duration::from_secs(60);
    let _late = h.add(3, request(prompt(3, 8), 2, 100));
    h.run_to_idle();
    assert!(first_token_step(&h, 3) < first_token_step(&h, 2));
}

#[test]
fn an_interactive_arrival_takes_a_batch_sequences_slot_at_once_and_the_batch_finishes_after() {
    let mut h = Harness::new(256, 64, 2);
    let mut b1 = h.add(1, batch_request(prompt(1, 8), 40, 0));
    let mut b2 = h.add(2, batch_request(prompt(2, 8), 40, 0));
    for _ in 0..3 {
        h.step();
    }
    assert_eq!(h.sched.running(), 2);
    let mut i = h.add(3, request(prompt(3, 8), 3, 0));
    let plan = h.step();
    // The newest batch sequence gave its slot back in the same step.
    assert_eq!(plan.preempted, vec![2], "{plan:?}");
    assert!(
        plan.find(3).is_some(),
        "the interactive request is in the step"
    );
    h.run_to_idle();
    let (toks, end) = drain(&mut i);
    assert_eq!(toks.len(), 3);
    assert!(matches!(end, Some(Event::Finished { .. })));
    for rx in [&mut b1, &mut b2] {
        let (toks, end) = drain(rx);
        assert_eq!(toks.len(), 40, "the batch work still completes in full");
        assert!(matches!(end, Some(Event::Finished { .. })));
    }
    assert_eq!(h.sched.pool().used(), 0);
}

#[test]
fn batch_sequences_take_at_most_their_allowance_while_interactive_work_runs() {
    // Budget 64, allowance 16: long batch prompts prefill 16 tokens a step beside an
    // interactive stream, and the whole budget once it is gone.
    let mut h = Harness::new(256, 64, 8);
    let _i = h.add(1, request(prompt(1, 4), 12, 0));
    h.step();
    let _b = h.add(2, batch_request(prompt(2, 200), 2, 0));
    let _c = h.add(3, batch_request(prompt(3, 200), 2, 0));
    for _ in 0..8 {
        let plan = h.step();
        let interactive_running = plan.find(1).is_some();
        let batch_tokens: usize = [2u64, 3]
            .iter()
            .filter_map(|&id| plan.find(id).map(|s| s.len))
            .sum();
        if interactive_running {
            assert!(
                batch_tokens <= 16,
                "{batch_tokens} batch tokens beside interactive work"
            );
        }
    }
    h.run_to_idle();
    let alone = h
        .plans
        .iter()
        .filter(|p| p.find(1).is_none())
        .map(|p| {
            [2u64, 3]
                .iter()
                .filter_map(|&id| p.find(id).map(|s| s.len))
                .sum::<usize>()
        })
        .max()
        .unwrap();
    assert!(
        alone > 16,
        "alone, the batch class gets the whole step ({alone})"
    );
}
