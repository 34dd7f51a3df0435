//! The KV block pool with automatic prefix caching.
//!
//! A full block is identified by a chained hash of its tokens and of every token before
//! it. Registered blocks stay in the cache after their sequences release them (refcount
//! zero, in LRU order) until an allocation needs the space. Hits are verified token by
//! token and against the parent hash, so a hash collision cannot serve wrong KV.
//!
//! Registered blocks are also indexed by their parent, so a prompt that diverges inside a
//! block can still reuse the leading tokens of a cached sibling (copied into a block of
//! its own): a chat template's shared prefix rarely ends on a block boundary.

use crate::error::{BlockError, BlockResult};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

struct Registered {
    hash: u64,
    parent: u64,
    tokens: Vec<u32>,
}

pub struct BlockPool {
    block_size: usize,
    refcount: Vec<u32>,
    free: Vec<u32>,
    by_hash: HashMap<u64, u32>,
    /// Registered blocks by parent hash, newest last, at most `MAX_SIBLINGS` each.
    children: HashMap<u64, Vec<u32>>,
    meta: Vec<Option<Registered>>,
    /// Evictable cached blocks by last use.
    lru: BTreeMap<u64, u32>,
    lru_tick: Vec<u64>,
    tick: u64,
}

/// Siblings kept findable for partial matches per parent; older ones are only found by
/// exact hash.
const MAX_SIBLINGS: usize = 32;

/// Hash of a block's tokens chained onto its parent's hash (0 for the first block).
pub fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    // SipHash with fixed keys: deterministic across runs and processes.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x6175_746f_676c_6d31, 0x7072_6566_6978_3031);
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl BlockPool {
    pub fn new(n_blocks: usize, block_size: usize) -> Self {
        Self {
            block_size,
            refcount: vec![0; n_blocks],
            free: (0..n_blocks as u32).rev().collect(),
            by_hash: HashMap::new(),
            children: HashMap::new(),
            meta: (0..n_blocks).map(|_| None).collect(),
            lru: BTreeMap::new(),
            lru_tick: vec![0; n_blocks],
            tick: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.refcount.len()
    }

    /// Blocks an allocation can still get (free or evictable).
    pub fn available(&self) -> usize {
        self.free.len() + self.lru.len()
    }

    /// Blocks referenced by at least one sequence.
    pub fn used(&self) -> usize {
        self.total() - self.available()
    }

    /// Unreferenced blocks kept for prefix hits.
    pub fn cached_free(&self) -> usize {
        self.lru.len()
    }

    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let (&t, &b) = self.lru.iter().next()?;
                self.lru.remove(&t);
                if let Some(m) = self.meta[b as usize].take() {
                    self.by_hash.remove(&m.hash);
                    self.forget_child(m.parent, b);
                }
                b
            }
        };
        self.refcount[b as usize] = 1;
        Some(b)
    }

    /// A cached block holding exactly `tokens` after the prefix hashed as `parent`.
    pub fn lookup(&mut self, parent: u64, tokens: &[u32]) -> Option<(u32, u64)> {
        let hash = chain_hash(parent, tokens);
        let &b = self.by_hash.get(&hash)?;
        let m = self.meta[b as usize].as_ref()?;
        if m.parent != parent || m.tokens != tokens {
            return None;
        }
        self.retain(b).ok()?;
        Some((b, hash))
    }

    /// The cached block after `parent` whose tokens share the longest non-empty prefix
    /// with `tokens`, and that length.
    pub fn longest_partial(&self, parent: u64, tokens: &[u32]) -> Option<(u32, usize)> {
        self.children
            .get(&parent)?
            .iter()
            .rev()
            .filter_map(|&b| {
                let m = self.meta[b as usize].as_ref()?;
                let n = m
                    .tokens
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                (n > 0).then_some((b, n))
            })
            .max_by_key(|&(_, n)| n)
    }

    /// One more reference to a referenced or cached block (taking it out of the
    /// evictable set). A block on the free list holds nothing to share: an error.
    pub fn retain(&mut self, b: u32) -> BlockResult<()> {
        let rc = *self
            .refcount
            .get(b as usize)
            .ok_or(BlockError::OutOfRange(b))?;
        if rc == 0 {
            if self.lru.get(&self.lru_tick[b as usize]) != Some(&b) {
                return Err(BlockError::RetainFree(b));
            }
            self.lru.remove(&self.lru_tick[b as usize]);
        }
        self.refcount[b as usize] += 1;
        Ok(())
    }

    fn forget_child(&mut self, parent: u64, b: u32) {
        if let Some(v) = self.children.get_mut(&parent) {
            v.retain(|&c| c != b);
            if v.is_empty() {
                self.children.remove(&parent);
            }
        }
    }

    /// Makes a full block findable. A block whose content is already cached elsewhere stays
    /// private (the two are interchangeable; one copy is enough).
    pub fn register(&mut self, block: u32, parent: u64, tokens: &[u32]) -> u64 {
        let hash = chain_hash(parent, tokens);
        if self.meta[block as usize].is_none() && !self.by_hash.contains_key(&hash) {
            self.by_hash.insert(hash, block);
            let siblings = self.children.entry(parent).or_default();
            siblings.push(block);
            if siblings.len() > MAX_SIBLINGS {
                siblings.remove(0);
            }
            self.meta[block as usize] = Some(Registered {
                hash,
                parent,
                tokens: tokens.to_vec(),
            });
        }
        hash
    }

    /// Drops one reference. Releasing a block nobody references is an error (and
    /// changes nothing), never a second entry on the free list.
    pub fn release(&mut self, block: u32) -> BlockResult<()> {
        let rc = self
            .refcount
            .get_mut(block as usize)
            .ok_or(BlockError::OutOfRange(block))?;
        if *rc == 0 {
            return Err(BlockError::DoubleRelease(block));
        }
        *rc -= 1;
        if *rc == 0 {
            if self.meta[block as usize].is_some() {
                self.tick += 1;
                self.lru_tick[block as usize] = self.tick;
                self.lru.insert(self.tick, block);
            } else {
                self.free.push(block);
            }
        }
        Ok(())
    }

    /// References held on `block` (0 when free or cached).
    pub fn refcount(&self, block: u32) -> u32 {
        self.refcount.get(block as usize).copied().unwrap_or(0)
    }

    /// Checks the pool's bookkeeping: every block is exactly one of referenced, free or
    /// cached-evictable; the indexes point only at registered blocks with matching
    /// metadata. For tests and debugging; linear in the pool size.
    pub fn check_invariants(&self) -> Result<(), String> {
        let free: HashSet<u32> = self.free.iter().copied().collect();
        if free.len() != self.free.len() {
            return Err("a block is on the free list twice".into());
        }
        let cached: HashSet<u32> = self.lru.values().copied().collect();
        if cached.len() != self.lru.len() {
            return Err("a block is in the LRU twice".into());
        }
        for (&t, &b) in &self.lru {
            if self.lru_tick[b as usize] != t {
                return Err(format!("block {b}: stale LRU tick"));
            }
        }
        for b in 0..self.total() as u32 {
            let rc = self.refcount[b as usize];
            let states = (rc > 0) as u8 + free.contains(&b) as u8 + cached.contains(&b) as u8;
            if states != 1 {
                return Err(format!(
                    "block {b}: refcount {rc}, free {}, cached {}",
                    free.contains(&b),
                    cached.contains(&b)
                ));
            }
            if free.contains(&b) && self.meta[b as usize].is_some() {
                return Err(format!("free block {b} is still registered"));
            }
            if cached.contains(&b) && self.meta[b as usize].is_none() {
                return Err(format!("cached block {b} is not registered"));
            }
        }
        for (&h, &b) in &self.by_hash {
            match &self.meta[b as usize] {
                Some(m) if m.hash == h && chain_hash(m.parent, &m.tokens) == h => {}
                _ => {
                    return Err(format!(
                        "hash index points at block {b}, which does not hold it"
                    ))
                }
            }
        }
        for (&parent, kids) in &self.children {
            for &b in kids {
                match &self.meta[b as usize] {
                    Some(m) if m.parent == parent => {}
                    _ => {
                        return Err(format!(
                            "sibling index points at block {b} under a wrong parent"
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_registered_blocks_are_found_again_until_evicted() {
        let mut p = BlockPool::new(2, 4);
        let a = p.allocate().unwrap();
        let h = p.register(a, 0, &[1, 2, 3, 4]);
        p.release(a).unwrap();
        assert_eq!((p.used(), p.available(), p.cached_free()), (0, 2, 1));
        assert_eq!(p.lookup(0, &[1, 2, 3, 4]), Some((a, h)));
        assert_eq!(p.used(), 1);
        assert_eq!(p.lookup(0, &[1, 2, 3, 5]), None);
        assert_eq!(
            p.lookup(7, &[1, 2, 3, 4]),
            None,
            "same tokens after a different prefix"
        );
        p.release(a).unwrap();
        let b = p.allocate().unwrap();
        let c = p.allocate().unwrap();
        assert!(p.allocate().is_none());
        assert!([b, c].contains(&a), "the cached block is evicted last");
        assert_eq!(p.lookup(0, &[1, 2, 3, 4]), None);
    }

    #[test]
    fn shared_blocks_are_refcounted() {
        let mut p = BlockPool::new(4, 2);
        let a = p.allocate().unwrap();
        p.register(a, 0, &[9, 9]);
        assert!(p.lookup(0, &[9, 9]).is_some());
        p.release(a).unwrap();
        assert_eq!(p.used(), 1);
        p.release(a).unwrap();
        assert_eq!(p.used(), 0);
        assert_eq!(p.release(a), Err(BlockError::DoubleRelease(a)));
        assert_eq!(p.release(99), Err(BlockError::OutOfRange(99)));
        let free = p.allocate().unwrap();
        p.release(free).unwrap();
        assert_eq!(p.retain(free), Err(BlockError::RetainFree(free)));
        p.check_invariants().unwrap();
    }

    #[test]
    fn partial_matches_find_the_longest_sibling_and_forget_evicted_ones() {
        let mut p = BlockPool::new(3, 4);
        let root = p.allocate().unwrap();
        let h = p.register(root, 0, &[1, 2, 3, 4]);
        let a = p.allocate().unwrap();
        p.register(a, h, &[5, 6, 7, 8]);
        let b = p.allocate().unwrap();
        p.register(b, h, &[5, 6, 9, 9]);
        assert_eq!(p.longest_partial(h, &[5, 6, 7, 0]), Some((a, 3)));
        assert_eq!(p.longest_partial(h, &[5, 6, 9]), Some((b, 3)));
        assert_eq!(p.longest_partial(h, &[7]), None);
        assert_eq!(p.longest_partial(12345, &[5]), None);
        // `a` released first, so it is the one evicted by the next allocation.
        p.release(a).unwrap();
        p.release(b).unwrap();
        p.allocate().unwrap();
        assert_eq!(p.longest_partial(h, &[5, 6, 7, 0]), Some((b, 2)));
    }
}
