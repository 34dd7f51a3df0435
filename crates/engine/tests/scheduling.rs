//! The engine end to end on the real model: preemption and partial-block reuse give the
//! model's own tokens, limits are refused up front, a dropped stream frees its blocks.
//! The scheduling rules themselves are tested step by step in `scheduler.rs`.

use engine::{EngineConfig, EngineHandle, Event, GenerationRequest, SubmitError};
use kernels::ThreadPool;
use model::paths::test_model_path;
use model::{Model, SamplingParams};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        Arc::new(
            Model::load(
                test_model_path(&|k| std::env::var_os(k)),
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
        class: engine::PriorityClass::Interactive,
        tag: None,
        constraint: None,
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
            Event::Error { message, .. } => panic!("{message}"),
            Event::Scheduled { .. } | Event::Preempted { .. } => {
                panic!("scheduling events are for traced requests only")
            }
        }
    }
    (toks, first)
}

/// A traced request's tokens, and how often it was scheduled and preempted; a
/// scheduling event after the first token is an error, as is a preemption before the
/// request was first scheduled.
fn collect_traced(mut s: engine::RequestStream) -> (Vec<u32>, usize, usize) {
    let (mut toks, mut scheduled, mut preempted) = (Vec::new(), 0, 0);
    while let Some(ev) = s.blocking_recv() {
        match ev {
            Event::Scheduled { .. } => {
                assert!(toks.is_empty() && preempted == 0);
                scheduled += 1;
            }
            Event::Preempted { .. } => {
                assert_eq!(scheduled, 1);
                preempted += 1;
            }
            Event::Token(t) => toks.push(t.token),
            Event::Finished { .. } => break,
            Event::Error { message, .. } => panic!("{message}"),
        }
    }
    (toks, scheduled, preempted)
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len).map(|j| 300 + (i * 131 + j * 17) % 20000).collect()
}

#[test]
fn preempted_requests_recompute_and_finish_with_the_same_tokens() {
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
    // Traced: each stream also says when it was scheduled and preempted.
    let streams: Vec<_> = (0..6)
        .map(|i| {
            let mut r = greedy(prompt(i, 40), 40, 0);
            r.tag = Some(Arc::new(engine::RequestTag {
                traced: true,
                ..Default::default()
            }));
            tight.submit(r).unwrap()
        })
        .collect();
    let runs: Vec<(Vec<u32>, usize, usize)> = std::thread::scope(|sc| {
        let hs: Vec<_> = streams
            .into_iter()
            .map(|s| sc.spawn(move || collect_traced(s)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let got: Vec<Vec<u32>> = runs.iter().map(|r| r.0.clone()).collect();
    assert_eq!(got, alone);
    assert!(runs.iter().all(|r| r.1 == 1), "scheduled once each");
    assert!(
        runs.iter().map(|r| r.2).sum::<usize>() > 0,
        "some were preempted"
    );
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
            Event::Error { message, .. } => panic!("{message}"),
            Event::Scheduled { .. } | Event::Preempted { .. } => {
                panic!("scheduling events are for traced requests only")
            }
        }
    }
    panic!("stream ended without finishing")
}

#[test]
fn a_prompt_diverging_inside_a_block_reuses_the_shared_slots() {
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
fn requests_that_cannot_fit_are_refused_up_front() {
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
