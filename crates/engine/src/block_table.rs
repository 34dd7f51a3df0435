//! A sequence's KV blocks: which block holds which positions, and the chained hashes of
//! the leading full blocks. Blocks enter a table only through the pool (allocated,
//! or shared from the prefix cache) and leave only through [`BlockTable::release`],
//! which every exit of a sequence (finish, cancel, preempt, failure) goes through.

use crate::block_pool::BlockPool;
use crate::error::BlockResult;
use crate::plan::BlockCopy;

#[derive(Debug, Default)]
pub struct BlockTable {
    blocks: Vec<u32>,
    /// Chained hashes of the leading full blocks already registered or matched.
    hashes: Vec<u64>,
}

impl BlockTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Blocks needed to hold K/V for the first `upto` tokens, beyond those held.
    pub fn blocks_short(&self, upto: usize, block_size: usize) -> usize {
        upto.div_ceil(block_size).saturating_sub(self.blocks.len())
    }

    /// Takes cached blocks for the longest matching prefix of `tokens`, leaving at least
    /// one token to compute (its logits are needed). Returns the tokens matched.
    pub fn match_prefix(&mut self, pool: &mut BlockPool, tokens: &[u32]) -> usize {
        debug_assert!(self.blocks.is_empty());
        let bs = pool.block_size();
        let full = tokens.len().saturating_sub(1) / bs;
        let mut parent = 0u64;
        for i in 0..full {
            match pool.lookup(parent, &tokens[i * bs..(i + 1) * bs]) {
                Some((b, h)) => {
                    self.blocks.push(b);
                    self.hashes.push(h);
                    parent = h;
                }
                None => break,
            }
        }
        self.blocks.len() * bs
    }

    /// After `match_prefix` matched `computed` tokens: when a cached block continues the
    /// prefix with some of the next tokens (not all: one must be left to compute),
    /// allocates a block for them and returns the copy that fills it. The source is
    /// pinned (retained) so nothing evicts it before the copy runs; the caller releases
    /// it afterwards.
    pub fn match_partial(
        &mut self,
        pool: &mut BlockPool,
        tokens: &[u32],
        computed: usize,
    ) -> Option<BlockCopy> {
        let bs = pool.block_size();
        debug_assert_eq!(computed, self.blocks.len() * bs);
        let limit = (tokens.len().checked_sub(1 + computed)?).min(bs);
        if limit == 0 {
            return None;
        }
        let parent = self.hashes.last().copied().unwrap_or(0);
        let (src, n) = pool.longest_partial(parent, &tokens[computed..computed + limit])?;
        pool.retain(src).ok()?;
        match pool.allocate() {
            Some(dst) => {
                self.blocks.push(dst);
                Some(BlockCopy { src, dst, len: n })
            }
            None => {
                // Nothing was taken; the pin is the only reference to undo.
                let _ = pool.release(src);
                None
            }
        }
    }

    /// Allocates `n` more blocks. The caller has checked `pool.available()`; if it was
    /// wrong, the blocks taken so far stay in the table and `false` is returned.
    pub fn grow(&mut self, pool: &mut BlockPool, n: usize) -> bool {
        for _ in 0..n {
            match pool.allocate() {
                Some(b) => self.blocks.push(b),
                None => return false,
            }
        }
        true
    }

    /// Registers every full block among the first `computed` tokens not yet registered,
    /// so later requests can share it.
    pub fn register_full(&mut self, pool: &mut BlockPool, tokens: &[u32], computed: usize) {
        let bs = pool.block_size();
        while self.hashes.len() < (computed / bs).min(self.blocks.len()) {
            let i = self.hashes.len();
            let parent = self.hashes.last().copied().unwrap_or(0);
            let h = pool.register(self.blocks[i], parent, &tokens[i * bs..(i + 1) * bs]);
            self.hashes.push(h);
        }
    }

    /// Returns every block to the pool. The table is empty afterwards even if the pool
    /// reports a misuse (the first error is returned).
    pub fn release(&mut self, pool: &mut BlockPool) -> BlockResult<()> {
        self.hashes.clear();
        let mut first = Ok(());
        for b in self.blocks.drain(..) {
            if let Err(e) = pool.release(b) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}
