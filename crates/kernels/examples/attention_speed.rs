//! Times paged attention over a long context on the Llama-3.2-1B head shape (32 query
//! heads, 8 KV heads of 64; `HEADS=9 KV_HEADS=3` for SmolLM2-135M's), for comparing
//! attention changes on one host without a model around them (`autoglm perf
//! --prefill-depth` measures end to end).
//!   cargo run --release -p kernels --example attention_speed -- [DEPTH] [ROWS] [THREADS]
//! Defaults: 8192 positions in the cache, 32 query rows (a prefill chunk at that depth; 1
//! is batch-1 decode), all cores. Every call goes to the next of 16 layers' caches, as a
//! forward pass does, so a layer's K and V are not in the caches when it is read (16
//! layers at 8192 positions are 256 MiB). Prints the best of several rounds.
use kernels::ops::{attention, AttnParams, AttnSeq, KvLayout, LayerKv};
use kernels::ThreadPool;
use std::time::Instant;

const LAYERS: usize = 16;

/// A tiny xorshift: the values do not matter to the speed, only that they are not all
/// alike.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |s| s.parse().expect("a number"))
    };
    let (depth, rows) = (arg(1, 8192), arg(2, 32));
    let pool = ThreadPool::new(arg(3, ThreadPool::default_threads()));
    // HEADS=9 KV_HEADS=3 picks another head shape (SmolLM2-135M's).
    let env =
        |name: &str, d: usize| std::env::var(name).map_or(d, |s| s.parse().expect("a number"));
    let layout = KvLayout {
        block_size: 16,
        n_kv_heads: env("KV_HEADS", 8),
        head_dim: 64,
    };
    let n_heads = env("HEADS", 32);
    let ctx = depth + rows;
    let blocks = ctx.div_ceil(layout.block_size);
    let mut seed = 0x9e37_79b9u64;
    let layers: Vec<LayerKv> = (0..LAYERS)
        .map(|_| {
            let mut kv = LayerKv::new(&layout, blocks);
            for c in kv.k.iter_mut().chain(kv.v.iter_mut()) {
                *c = next(&mut seed) as i16 >> 4;
            }
            for s in kv.k_scale.iter_mut().chain(kv.v_scale.iter_mut()) {
                *s = 1e-4 * (1 + next(&mut seed) % 100) as f32;
            }
            kv
        })
        .collect();
    // Blocks in the order a fresh pool hands them out.
    let table: Vec<u32> = (0..blocks as u32).collect();
    let width = n_heads * layout.head_dim;
    let q: Vec<f32> = (0..rows * width)
        .map(|_| (next(&mut seed) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let mut out = vec![0f32; rows * width];
    let seqs = [AttnSeq {
        block_table: &table,
        first_row: 0,
        n_rows: rows,
        first_pos: depth,
    }];
    let params = AttnParams::scaled(0.125);
    let mut best = f64::INFINITY;
    // ROUNDS=N times N rounds (default 5), e.g. for a profile.
    for _ in 0..env("ROUNDS", 5) {
        let t = Instant::now();
        for kv in &layers {
            attention(
                &pool,
                &q,
                n_heads,
                &kv.paged(layout),
                &seqs,
                &params,
                &mut out,
            );
        }
        best = best.min(t.elapsed().as_secs_f64() / LAYERS as f64);
    }
    // Multiply-adds of the scores and of the weighted sum of V, over every query head.
    let macs = 2.0 * (rows * n_heads * layout.head_dim) as f64 * (depth as f64 + rows as f64 / 2.0);
    println!(
        "attention depth {depth} rows {rows}: {:.3} ms per layer, {:.1} GMAC/s (sum of outputs {:.3e})",
        best * 1e3,
        macs / best / 1e9,
        out.iter().map(|&x| x as f64).sum::<f64>()
    );
}
