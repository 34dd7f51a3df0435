//! The engine on the real model: preemption under memory pressure, priorities, limits.

use engine::{EngineConfig, EngineHandle, Event, GenerationRequest, SubmitError};
use kernels::ThreadPool;
use model::paths::test_model_path;
use model::{Model, SamplingParams};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// One engine at a time: several of these tests depend on timing (a burst gathered
/// within the engine's quiet window, waiting order), which other tests' engines competing
/// for two cores would disturb.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        Arc::new(
            Model::load(
                test_model_path(),
                Arc::new(ThreadPool::new(ThreadPool::default_threads())),
            )
            .unwrap(),
        )
    })
    .clone()
}

fn greedy(prompt: Vec<u32>, max_tokens: usize, priority: i32) -> GenerationRequest {
    GenerationRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_tokens: vec![],
        logprobs: None,
        priority,
    }
}

fn collect(mut s: engine::RequestStream) -> (Vec<u32>, Option<Instant>) {
    let mut toks = Vec::new();
    let mut first = None;
    while let Some(ev) = s.blocking_recv() {
        match ev {
            Event::Token(t) => {
                first.get_or_insert_with(Instant::now);
                toks.push(t.token);
            }
            Event::Finished { .. } => break,
            Event::Error(e) => panic!("{e}"),
        }
    }
    (toks, first)
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len).map(|j| 300 + (i * 131 + j * 17) % 20000).collect()
}

#[test]
fn preempted_requests_recompute_and_finish_with_the_same_tokens() {
    let _one_at_a_time = serial();
    let roomy = EngineHandle::start(model(), EngineConfig::default());
    let alone: Vec<Vec<u32>> = (0..6)
        .map(|i| collect(roomy.submit(greedy(prompt(i, 40), 40, 0)).unwrap()).0)
        .collect();
    // 12 blocks of 16 = 192 tokens for six requests of 80 tokens each: they cannot all
    // run at once, so the scheduler must preempt and recompute.
    let tight = EngineHandle::start(
        model(),
        EngineConfig {
            kv_cache_tokens: 192,
            block_size: 16,
            ..Default::default()
        },
    );
    let streams: Vec<_> = (0..6)
        .map(|i| tight.submit(greedy(prompt(i, 40), 40, 0)).unwrap())
        .collect();
    let got: Vec<Vec<u32>> = std::thread::scope(|sc| {
        let hs: Vec<_> = streams
            .into_iter()
            .map(|s| sc.spawn(move || collect(s).0))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got, alone);
    let t = Instant::now();
    while tight.stats().kv_blocks_used != 0 {
        assert!(t.elapsed().as_secs() < 5, "{:?}", tight.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn finish(mut s: engine::RequestStream) -> (Vec<u32>, usize) {
    let mut toks = Vec::new();
    while let Some(ev) = s.blocking_recv() {
        match ev {
            Event::Token(t) => toks.push(t.token),
            Event::Finished { cached_tokens, .. } => return (toks, cached_tokens),
            Event::Error(e) => panic!("{e}"),
        }
    }
    panic!("stream ended without finishing")
}

#[test]
fn a_prompt_diverging_inside_a_block_reuses_the_shared_slots() {
    let _one_at_a_time = serial();
    // 16 + 9 shared tokens, then different: one full block hits by hash, nine slots are
    // copied from the earlier request's second block.
    let shared = prompt(7, 25);
    let with_tail = |t: u32| {
        let mut p = shared.clone();
        p.extend(prompt(t, 12));
        p
    };
    let warm = EngineHandle::start(model(), EngineConfig::default());
    let (_, cached) = finish(warm.submit(greedy(with_tail(1), 4, 0)).unwrap());
    assert_eq!(cached, 0);
    let (got, cached) = finish(warm.submit(greedy(with_tail(2), 24, 0)).unwrap());
    assert_eq!(cached, 25);
    let cold = EngineHandle::start(model(), EngineConfig::default());
    let (want, cached) = finish(cold.submit(greedy(with_tail(2), 24, 0)).unwrap());
    assert_eq!(cached, 0);
    assert_eq!(got, want);
}

#[test]
fn lower_priority_values_run_first() {
    let _one_at_a_time = serial();
    let e = EngineHandle::start(
        model(),
        EngineConfig {
            max_seqs: 1,
            ..Default::default()
        },
    );
    let blocker = e.submit(greedy(prompt(9, 8), 30, 0)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let late = e.submit(greedy(prompt(1, 8), 4, 10)).unwrap();
    let urgent = e.submit(greedy(prompt(2, 8), 4, -5)).unwrap();
    let normal = e.submit(greedy(prompt(3, 8), 4, 0)).unwrap();
    let (hb, hl, hu, hn) = std::thread::scope(|sc| {
        let b = sc.spawn(move || collect(blocker).1);
        let l = sc.spawn(move || collect(late).1);
        let u = sc.spawn(move || collect(urgent).1);
        let n = sc.spawn(move || collect(normal).1);
        (
            b.join().unwrap(),
            l.join().unwrap(),
            u.join().unwrap(),
            n.join().unwrap(),
        )
    });
    let (hb, hl, hu, hn) = (hb.unwrap(), hl.unwrap(), hu.unwrap(), hn.unwrap());
    assert!(
        hb < hu && hu < hn && hn < hl,
        "order of first tokens: blocker, urgent, normal, late"
    );
}

#[test]
fn requests_that_cannot_fit_are_refused_up_front() {
    let _one_at_a_time = serial();
    let e = EngineHandle::start(
        model(),
        EngineConfig {
            kv_cache_tokens: 64,
            ..Default::default()
        },
    );
    assert!(matches!(
        e.submit(greedy(prompt(0, 40), 40, 0)),
        Err(SubmitError::ExceedsCache { .. })
    ));
    assert!(matches!(
        e.submit(greedy(vec![], 4, 0)),
        Err(SubmitError::EmptyPrompt)
    ));
    assert!(matches!(
        e.submit(greedy(vec![1 << 30], 4, 0)),
        Err(SubmitError::BadToken(_))
    ));
    assert!(matches!(
        e.submit(greedy(prompt(0, 8), 9000, 0)),
        Err(SubmitError::TooLong { .. })
    ));
    // A request that fits alone is served even though the cache is tiny.
    assert_eq!(
        collect(e.submit(greedy(prompt(0, 20), 40, 0)).unwrap())
            .0
            .len(),
        40
    );
}

#[test]
fn dropping_a_stream_cancels_and_frees() {
    let _one_at_a_time = serial();
    let e = EngineHandle::start(model(), EngineConfig::default());
    let mut s = e.submit(greedy(prompt(4, 20), 5000, 0)).unwrap();
    for _ in 0..3 {
        assert!(matches!(s.blocking_recv(), Some(Event::Token(_))));
    }
    assert!(e.stats().kv_blocks_used > 0);
    drop(s);
    let t = Instant::now();
    while e.stats().kv_blocks_used != 0 || e.stats().running != 0 {
        assert!(t.elapsed().as_secs() < 5, "{:?}", e.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_between_the_decodes_of_running_streams() {
    let _one_at_a_time = serial();
    let cfg = EngineConfig {
        max_batch_tokens: 64,
        max_prefill_tokens: 2048,
        ..Default::default()
    };
    let long = prompt(7, 640);
    let alone = collect(
        EngineHandle::start(model(), cfg.clone())
            .submit(greedy(long.clone(), 4, 0))
            .unwrap(),
    )
    .0;
    let e = EngineHandle::start(model(), cfg);
    let mut running = e.submit(greedy(prompt(3, 8), 400, 0)).unwrap();
    for _ in 0..3 {
        assert!(matches!(running.blocking_recv(), Some(Event::Token(_))));
    }
    let mut late = e.submit(greedy(long, 4, 0)).unwrap();
    let first = match late.blocking_recv() {
        Some(Event::Token(t)) => t.token,
        other => panic!("{other:?}"),
    };
    // Every step before the long prompt's last chunk also decoded the running stream:
    // 640 tokens in chunks of at most 63 (the decode takes one of the 64) is 11 steps.
    let mut decoded_meanwhile = 0;
    while let Some(Event::Token(_)) = running.try_recv() {
        decoded_meanwhile += 1;
    }
    assert!(
        decoded_meanwhile >= 10,
        "{decoded_meanwhile} tokens while prefilling"
    );
    let mut rest = collect(late).0;
    rest.insert(0, first);
    assert_eq!(
        rest, alone,
        "chunked prefill gives the tokens of an unchunked one"
    );
}

#[test]
fn an_idle_engine_prefills_a_burst_in_one_step() {
    let _one_at_a_time = serial();
    let e = EngineHandle::start(
        model(),
        EngineConfig {
            max_batch_tokens: 64,
            max_prefill_tokens: 2048,
            ..Default::default()
        },
    );
    let before = e.stats().steps;
    // 8 prompts of 60 tokens, 480 in all: far over the 64 a step with decodes may carry.
    let streams: Vec<_> = (0..8)
        .map(|i| e.submit(greedy(prompt(20 + i, 60), 3, 0)).unwrap())
        .collect();
    for s in streams {
        assert_eq!(collect(s).0.len(), 3);
    }
    // One step prefills all eight and samples their first tokens, two more decode.
    assert_eq!(e.stats().steps - before, 3);
}
