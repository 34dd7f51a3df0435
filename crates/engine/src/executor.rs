//! The model behind a trait: the engine loop hands an executor each step's batch, and
//! the scheduler never knows whether a real model or a test double computed it.

use crate::plan::BlockCopy;
use model::{KvCache, Logits, Model, SeqInput};
use std::sync::Arc;

/// What the scheduler must know about the executor's KV memory and vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorInfo {
    pub vocab_size: usize,
    pub context_length: usize,
    pub n_blocks: usize,
    pub block_size: usize,
}

pub trait Executor: Send + 'static {
    fn info(&self) -> ExecutorInfo;
    /// Copies the first `n` slots of one KV block into another (a prompt that diverges
    /// inside a cached block reuses its leading slots). Runs before the step's forward.
    fn copy_block_prefix(&mut self, copy: &BlockCopy);
    /// One forward step over the batch. An `Err` fails the step's sequences only.
    fn forward(&mut self, batch: &[SeqInput]) -> Result<Logits, String>;
}

/// The real model over its paged KV cache.
pub struct ModelExecutor {
    model: Arc<Model>,
    kv: KvCache,
    context: usize,
}

impl ModelExecutor {
    pub fn new(
        model: Arc<Model>,
        kv_cache_tokens: usize,
        block_size: usize,
        context: usize,
    ) -> Self {
        let kv = KvCache::new(&model.config, kv_cache_tokens, block_size);
        Self { model, kv, context }
    }
}

impl Executor for ModelExecutor {
    fn info(&self) -> ExecutorInfo {
        ExecutorInfo {
            vocab_size: self.model.config.vocab_size,
            context_length: self.context,
            n_blocks: self.kv.n_blocks,
            block_size: self.kv.block_size,
        }
    }

    fn copy_block_prefix(&mut self, c: &BlockCopy) {
        self.kv
            .copy_block_prefix(c.src as usize, c.dst as usize, c.len);
    }

    fn forward(&mut self, batch: &[SeqInput]) -> Result<Logits, String> {
        self.model
            .forward(&mut self.kv, batch)
            .map_err(|e| e.to_string())
    }
}
