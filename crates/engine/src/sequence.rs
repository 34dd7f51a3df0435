use crate::block_pool::BlockPool;
use crate::request::{Event, GenerationRequest};
use model::{KvCache, Sampler};
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
    pub blocks: Vec<u32>,
    /// Leading tokens whose K/V are in `blocks`.
    pub computed: usize,
    /// Chained hashes of the leading full blocks already registered or matched.
    pub hashes: Vec<u64>,
    pub cached_tokens: usize,
    pub arrival: Instant,
    pub last_token_at: Option<Instant>,
    pub preempted: u32,
}

impl Sequence {
    pub fn new(id: u64, req: GenerationRequest, tx: UnboundedSender<Event>) -> Self {
        let sampler = Sampler::new(req.sampling.clone());
        Self {
            id,
            tokens: req.prompt.clone(),
            req,
            sampler,
            tx,
            blocks: Vec::new(),
            computed: 0,
            hashes: Vec::new(),
            cached_tokens: 0,
            arrival: Instant::now(),
            last_token_at: None,
            preempted: 0,
        }
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

    /// Blocks needed to hold K/V for the first `upto` tokens, beyond those held.
    pub fn blocks_short(&self, upto: usize, block_size: usize) -> usize {
        upto.div_ceil(block_size).saturating_sub(self.blocks.len())
    }

    /// Takes cached blocks for the longest matching prefix, leaving at least one token to
    /// compute (its logits are needed). Returns the number of tokens matched.
    pub fn match_prefix(&mut self, pool: &mut BlockPool) -> usize {
        debug_assert!(self.blocks.is_empty() && self.computed == 0);
        let bs = pool.block_size();
        let full = (self.tokens.len() - 1) / bs;
        let mut parent = 0u64;
        for i in 0..full {
            match pool.lookup(parent, &self.tokens[i * bs..(i + 1) * bs]) {
                Some((b, h)) => {
                    self.blocks.push(b);
                    self.hashes.push(h);
                    parent = h;
                }
                None => break,
            }
        }
        self.computed = self.blocks.len() * bs;
        self.computed
    }

    /// After `match_prefix`: when a cached block continues the matched prefix with some of
    /// the next tokens (but not all of them), copies those slots into a new block of this
    /// sequence instead of recomputing them. Leaves at least one token to compute.
    /// Returns the number of tokens gained.
    pub fn match_partial_block(&mut self, pool: &mut BlockPool, kv: &mut KvCache) -> usize {
        let bs = pool.block_size();
        debug_assert_eq!(self.computed, self.blocks.len() * bs);
        let start = self.computed;
        let limit = (self.tokens.len() - 1 - start).min(bs);
        if limit == 0 {
            return 0;
        }
        let parent = self.hashes.last().copied().unwrap_or(0);
        let Some((src, n)) = pool.longest_partial(parent, &self.tokens[start..start + limit])
        else {
            return 0;
        };
        // Pinned, so the allocation below cannot evict the source.
        pool.retain(src);
        let dst = pool.allocate();
        if let Some(dst) = dst {
            kv.copy_block_prefix(src as usize, dst as usize, n);
            self.blocks.push(dst);
            self.computed += n;
        }
        pool.release(src);
        if dst.is_some() {
            n
        } else {
            0
        }
    }

    /// Registers every full, computed block not yet registered, so later requests can
    /// share it.
    pub fn register_full_blocks(&mut self, pool: &mut BlockPool) {
        let bs = pool.block_size();
        while self.hashes.len() < self.computed / bs {
            let i = self.hashes.len();
            let parent = self.hashes.last().copied().unwrap_or(0);
            let h = pool.register(self.blocks[i], parent, &self.tokens[i * bs..(i + 1) * bs]);
            self.hashes.push(h);
        }
    }

    pub fn release(&mut self, pool: &mut BlockPool) {
        for b in self.blocks.drain(..) {
            pool.release(b);
        }
        self.hashes.clear();
        self.computed = 0;
    }
}
