use crate::block_table::BlockTable;
use crate::request::{Event, GenerationRequest};
use model::Sampler;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// A request inside the engine.
pub(crate) struct Sequence {
    pub id: u64,
    pub req: GenerationRequest,
    pub sampler: Sampler,
    pub tx: UnboundedSender<Event>,
    /// Prompt followed by the tokens generated so far.
    pub tokens: Vec<u32>,
    pub table: BlockTable,
    /// Leading tokens whose K/V are in the table's blocks.
    pub computed: usize,
    pub cached_tokens: usize,
    pub arrival: Instant,
    /// When the scheduler first gave it a step (the end of its queue time).
    pub scheduled_at: Option<Instant>,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
    pub preempted: u32,
    /// A cached block pinned until this step's copy out of it has run.
    pub pinned: Option<u32>,
}

impl Sequence {
    pub fn new(
        id: u64,
        req: GenerationRequest,
        tx: UnboundedSender<Event>,
        arrival: Instant,
    ) -> Self {
        let mut sampler = Sampler::new(req.sampling.clone(), &req.prompt);
        if let Some(c) = &req.constraint {
            sampler.push_processor(c.make());
        }
        Self {
            id,
            tokens: req.prompt.clone(),
            req,
            sampler,
            tx,
            table: BlockTable::new(),
            computed: 0,
            cached_tokens: 0,
            arrival,
            scheduled_at: None,
            first_token_at: None,
            last_token_at: None,
            preempted: 0,
            pinned: None,
        }
    }

    pub fn traced(&self) -> bool {
        self.req.tag.as_ref().is_some_and(|t| t.traced)
    }

    pub fn generated(&self) -> usize {
        self.tokens.len() - self.req.prompt.len()
    }

    pub fn remaining(&self) -> usize {
        self.tokens.len() - self.computed
    }

    pub fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }
}
