//! A panic inside a model step: every request in flight and every later one is told the
//! engine failed, instead of hanging or being told it is shutting down.

use engine::{
    BlockCopy, EngineConfig, EngineHandle, Event, Executor, ExecutorInfo, GenerationRequest,
    SubmitError,
};
use model::{Logits, SamplingParams, SeqInput};

struct PanickingExecutor;

impl Executor for PanickingExecutor {
    fn info(&self) -> ExecutorInfo {
        ExecutorInfo {
            vocab_size: 100,
            context_length: 512,
            n_blocks: 16,
            block_size: 16,
        }
    }
    fn copy_block_prefix(&mut self, _: &BlockCopy) {}
    fn forward(&mut self, _: &[SeqInput]) -> Result<Logits, String> {
        panic!("deliberate test panic in the model step");
    }
}

fn req() -> GenerationRequest {
    GenerationRequest {
        prompt: vec![1, 2, 3],
        sampling: SamplingParams::greedy(),
        max_tokens: 4,
        stop_tokens: vec![],
        logprobs: None,
        priority: 0,
        class: engine::PriorityClass::Interactive,
        tag: None,
        constraint: None,
    }
}

#[test]
fn a_panicking_step_fails_in_flight_and_later_requests_with_its_message() {
    let e = EngineHandle::start_with(PanickingExecutor, EngineConfig::default());
    assert_eq!(e.failure(), None);
    let mut s = e.submit(req()).unwrap();
    match s.blocking_recv() {
        Some(Event::Error {
            message,
            engine_failed: true,
        }) => assert!(message.contains("deliberate test panic"), "{message}"),
        other => panic!("{other:?}"),
    }
    let failure = e.failure().expect("the handle knows the engine failed");
    assert!(failure.contains("deliberate test panic"));
    match e.submit(req()) {
        Err(SubmitError::EngineFailed(m)) => assert_eq!(m, failure),
        other => panic!("{:?}", other.map(|_| ())),
    }
}
