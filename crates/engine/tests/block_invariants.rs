//! 200,000 random operations on the block pool and block tables (allocate, share a
//! cached prefix, copy a partial block, append, preempt, resume, cancel, finish, evict),
//! checked after every one against a shadow of what each block's KV slots hold: no block
//! leaks, none is freed twice, reference counts equal the tables that hold each block,
//! and the prefix index never hands out a block whose contents were overwritten.

use engine::{BlockPool, BlockTable};

const BS: usize = 4;
const BLOCKS: usize = 48;

/// xorshift64*: a fixed, dependency-free stream of test decisions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a KV slot holds depends on the token and everything before it: (position, a
/// digest of the tokens up to and including it).
type Slot = Option<(usize, u64)>;

fn slot_value(tokens: &[u32], p: usize) -> Slot {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in &tokens[..=p] {
        h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3);
    }
    Some((p, h))
}

struct Seq {
    table: BlockTable,
    tokens: Vec<u32>,
    computed: usize,
}

struct World {
    pool: BlockPool,
    /// What each KV slot holds, as the model would have written it.
    kv: Vec<Slot>,
    running: Vec<Seq>,
    /// Preempted: tokens kept, no blocks.
    waiting: Vec<Seq>,
    rng: Rng,
}

impl World {
    fn write(&mut self, i: usize, upto: usize) {
        let s = &mut self.running[i];
        for p in s.computed..upto {
            let b = s.table.blocks()[p / BS] as usize;
            self.kv[b * BS + p % BS] = slot_value(&s.tokens, p);
        }
        s.computed = upto;
        s.table.register_full(&mut self.pool, &s.tokens, s.computed);
    }

    /// What a sequence reads back from its blocks must be its own tokens.
    fn verify(&self, s: &Seq, upto: usize) {
        for p in 0..upto {
            let b = s.table.blocks()[p / BS] as usize;
            assert_eq!(
                self.kv[b * BS + p % BS],
                slot_value(&s.tokens, p),
                "position {p} of a sequence reads another sequence's KV (block {b})"
            );
        }
    }

    fn prompt(&mut self) -> Vec<u32> {
        // A few shared prefixes over a tiny alphabet: lots of cache hits and partials.
        let base = self.rng.below(4) as u32;
        let len = 1 + self.rng.below(30);
        (0..len)
            .map(|j| {
                if j < 10 + base as usize {
                    (base + j as u32) % 3
                } else {
                    self.rng.below(3) as u32
                }
            })
            .collect()
    }

    /// Admits a sequence the way the scheduler does: cached prefix, a partial copy, then
    /// blocks for a first chunk. Returns it to `waiting` when blocks run out.
    fn admit(&mut self, mut s: Seq) {
        let mut matched = s.table.match_prefix(&mut self.pool, &s.tokens);
        self.verify(&s, matched);
        if let Some(c) = s.table.match_partial(&mut self.pool, &s.tokens, matched) {
            for k in 0..c.len {
                let v = self.kv[c.src as usize * BS + k];
                assert_eq!(
                    v,
                    slot_value(&s.tokens, matched + k),
                    "partial copy source is stale"
                );
                self.kv[c.dst as usize * BS + k] = v;
            }
            self.pool.release(c.src).unwrap();
            matched += c.len;
        }
        s.computed = matched;
        let chunk = (s.tokens.len() - matched).min(1 + self.rng.below(12));
        let need = s.table.blocks_short(matched + chunk, BS);
        if self.pool.available() < need {
            s.table.release(&mut self.pool).unwrap();
            s.computed = 0;
            self.waiting.push(s);
            return;
        }
        assert!(s.table.grow(&mut self.pool, need));
        self.running.push(s);
        let i = self.running.len() - 1;
        self.write(i, matched + chunk);
    }

    fn op(&mut self) {
        match self.rng.below(100) {
            0..=24 => {
                let tokens = self.prompt();
                self.admit(Seq {
                    table: BlockTable::new(),
                    tokens,
                    computed: 0,
                });
            }
            25..=59 if !self.running.is_empty() => {
                // Compute more: the rest of the prompt in chunks, then decode appends.
                let i = self.rng.below(self.running.len());
                let s = &mut self.running[i];
                if s.computed == s.tokens.len() {
                    let t = self.rng.below(3) as u32;
                    s.tokens.push(t);
                }
                let upto = (s.computed + 1 + self.rng.below(8)).min(s.tokens.len());
                let need = s.table.blocks_short(upto, BS);
                if self.pool.available() < need {
                    // Preempt it: its blocks go back, it waits to recompute.
                    let mut s = self.running.swap_remove(i);
                    s.table.release(&mut self.pool).unwrap();
                    s.computed = 0;
                    self.waiting.push(s);
                } else {
                    assert!(self.running[i].table.grow(&mut self.pool, need));
                    self.write(i, upto);
                }
            }
            60..=69 if !self.running.is_empty() => {
                let i = self.rng.below(self.running.len());
                let mut s = self.running.swap_remove(i);
                self.verify(&s, s.computed);
                s.table.release(&mut self.pool).unwrap();
                s.computed = 0;
                self.waiting.push(s);
            }
            70..=79 if !self.waiting.is_empty() => {
                let i = self.rng.below(self.waiting.len());
                let s = self.waiting.swap_remove(i);
                self.admit(s);
            }
            80..=91 if !self.running.is_empty() => {
                // Finish or cancel: either way the one exit, release.
                let i = self.rng.below(self.running.len());
                let mut s = self.running.swap_remove(i);
                self.verify(&s, s.computed);
                s.table.release(&mut self.pool).unwrap();
            }
            92..=93 => {
                // A release with no reference left is refused and changes nothing.
                let b = self.rng.below(BLOCKS) as u32;
                if self.pool.refcount(b) == 0 {
                    assert!(self.pool.release(b).is_err());
                }
            }
            94..=95 if !self.waiting.is_empty() => {
                let i = self.rng.below(self.waiting.len());
                self.waiting.swap_remove(i);
            }
            _ => {
                // Pressure: grab free and evictable blocks, scribble on them, give back.
                let mut t = BlockTable::new();
                let n = self.rng.below(self.pool.available() + 1);
                assert!(t.grow(&mut self.pool, n));
                for &b in t.blocks() {
                    for k in 0..BS {
                        self.kv[b as usize * BS + k] = Some((usize::MAX, 0));
                    }
                }
                t.release(&mut self.pool).unwrap();
            }
        }
    }

    fn check(&self) {
        self.pool.check_invariants().unwrap();
        let mut held = [0u32; BLOCKS];
        for s in &self.running {
            for &b in s.table.blocks() {
                held[b as usize] += 1;
            }
        }
        for s in &self.waiting {
            assert!(s.table.is_empty(), "a waiting sequence holds blocks");
        }
        for (b, &n) in held.iter().enumerate() {
            assert_eq!(
                self.pool.refcount(b as u32),
                n,
                "block {b}: refcount vs holders"
            );
        }
        assert_eq!(self.pool.used(), held.iter().filter(|&&n| n > 0).count());
    }
}

#[test]
fn two_hundred_thousand_random_operations_keep_every_invariant() {
    let mut w = World {
        pool: BlockPool::new(BLOCKS, BS),
        kv: vec![None; BLOCKS * BS],
        running: Vec::new(),
        waiting: Vec::new(),
        rng: Rng(0x9e37_79b9_7f4a_7c15),
    };
    let mut hits = 0usize;
    for i in 0..200_000 {
        let cached_before = w.pool.cached_free();
        w.op();
        w.check();
        hits += (w.pool.cached_free() < cached_before) as usize;
        if i % 50_000 == 0 {
            // Also start over sometimes, from a pool full of cached blocks.
            for mut s in w.running.drain(..) {
                s.table.release(&mut w.pool).unwrap();
            }
        }
    }
    assert!(
        hits > 1000,
        "the workload should reuse cached blocks often ({hits})"
    );
    for mut s in w.running.drain(..) {
        s.table.release(&mut w.pool).unwrap();
    }
    w.check();
    assert_eq!(w.pool.used(), 0, "no block leaked");
}
