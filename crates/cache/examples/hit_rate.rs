//! Hit rate of the L1 under TinyLFU and under LRU at the same byte budget, on a skewed
//! workload (Zipf over request templates) and on a scan-heavy one (the same Zipf
//! traffic, with every other request a one-off that is never asked again, as a batch
//! sweep or a crawler sends). Deterministic for a seed; prints a Markdown table.
//!
//!     cargo run --release -p cache --example hit_rate [-- REQUESTS]

use cache::{Entry, Event, Key, MemoryTier, Policy};
use std::sync::Arc;
use std::time::Duration;

/// xorshift64*: a small deterministic generator (the simulation needs no crypto).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over ranks 0..n by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn key(id: u64) -> Key {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&id.to_le_bytes());
    Key(k)
}

/// A 128-token answer, one event per token, as a live response stores it.
fn answer() -> Arc<Entry> {
    let mut events: Vec<Event> = (0..128)
        .map(|i| Event::Text {
            choice: 0,
            text: format!(" w{i:03}"),
            tokens: vec![cache::TokenRecord {
                id: i,
                logprob: None,
                top: Vec::new(),
            }],
        })
        .collect();
    events.push(Event::Finish {
        choice: 0,
        reason: api::FinishReason::Length,
        prompt_tokens: 40,
        completion_tokens: 128,
    });
    Arc::new(Entry::new(events))
}

fn hit_rate(policy: Policy, bytes: u64, stream: &[u64]) -> f64 {
    let t = MemoryTier::new(bytes, policy, Duration::from_secs(3600));
    let e = answer();
    let mut hits = 0usize;
    for &id in stream {
        let k = key(id);
        if t.get_now(&k).is_some() {
            hits += 1;
        } else {
            t.insert_now(k, e.clone());
        }
    }
    hits as f64 / stream.len() as f64
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let templates = 10_000;
    let zipf = Zipf::new(templates, 1.0);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let skewed: Vec<u64> = (0..n).map(|_| zipf.sample(&mut rng) as u64).collect();
    let mut one_off = 1u64 << 40;
    let scan: Vec<u64> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                zipf.sample(&mut rng) as u64
            } else {
                one_off += 1;
                one_off
            }
        })
        .collect();
    let per_entry = answer().weight() as u64 + 32;
    println!("{n} requests, {templates} templates, Zipf s = 1.0, entry ≈ {per_entry} bytes\n");
    println!("| workload | L1 size (entries) | TinyLFU hit rate | LRU hit rate |");
    println!("|---|---|---|---|");
    for (name, stream) in [
        ("skewed (Zipf)", &skewed),
        ("scan-heavy (50% one-offs)", &scan),
    ] {
        for entries in [100u64, 500, 2000] {
            let bytes = entries * per_entry;
            let tl = hit_rate(Policy::TinyLfu, bytes, stream);
            let lru = hit_rate(Policy::Lru, bytes, stream);
            println!(
                "| {name} | {entries} | {:.1}% | {:.1}% |",
                tl * 100.0,
                lru * 100.0
            );
        }
    }
}
