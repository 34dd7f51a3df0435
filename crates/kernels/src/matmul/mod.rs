//! `y = x · Wᵀ` for quantized `W`, batched over activation rows.
//!
//! Weights are repacked at load into panels of 16 rows. Two arithmetics, chosen by the
//! weight format (never by the batch):
//! * quantized weights (every ggml block format) keep unsigned integer codes with a
//!   scale and min per block; activations are quantized per block to 16-bit integers
//!   (error ≤ amax/65024) and each block's dot product is an exact integer, computed
//!   with `vpdpbusd`, then scaled in f32 (see `scalar::codes_gemm`);
//! * f32/f16/bf16 weights are stored as f32 and every output is one sequential FMA chain.
//!
//! Integer sums do not depend on their order, and the f32 steps are the same for every
//! tile shape, so a row's result never depends on which other rows share the batch, and
//! each SIMD kernel is bitwise equal to its scalar twin.

mod acts;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod pack;
mod repack;
mod scalar;
mod shared_out;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use pack::Packed;
pub use pack::{PackedMatrix, PANEL};

use crate::pool::ThreadPool;
use crate::{isa, Isa};
use acts::{ActRow, QuantActs};
use shared_out::SharedOut;
use std::cell::RefCell;

/// Activation rows per register tile on the f32 path.
pub const MR: usize = 8;

/// How far ahead of the block being multiplied the AVX-512 integer kernels prefetch a
/// panel's bytes. On a 2-thread AVX-512 Xeon VM 512–4096 measured within noise of each
/// other on the 1B shape, 512 a little behind; without any, batch-1 decode there was 27%
/// slower and batch-16 23% (docs/benchmarks.md, "After panel prefetching"). On a Zen 4
/// EPYC 1024 decoded the 1B shape at batch 1 23% faster than 4096 and 4% faster than
/// 2048, with none 15% slower, batch 16 within noise ("Prefetch distance on Zen 4").
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_AVX512: usize = 1024;

/// The same for the AVX2 kernels: on a Zen 3 EPYC 4096 decoded the 1B shape at batch 1
/// 13% faster than 1024 (2048 +10%, 8192 +8%), batch 16 within noise ("Prefetching
/// further on Zen 3").
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_AVX2: usize = 4096;

/// Up to this many activation rows, tasks take few panels each (decode is bound by
/// streaming the weights, so every thread must have its share).
const DECODE_MAX_ROWS: usize = 4;

thread_local! {
    static ACTS: RefCell<QuantActs> = const { RefCell::new(QuantActs::new()) };
}

/// Frees the calling thread's quantized-activation buffers. They grow to the largest
/// step's rows and are reused by every later step, so without this a prefill step's
/// (about 20 MiB for 512 rows of 8192) would stay resident beside the KV cache for the life
/// of the process; a caller releases them after a step far larger than a decode batch,
/// whose refill then costs one page fault per 4 KiB against seconds of compute.
pub fn release_activation_buffers() {
    ACTS.with(|a| *a.borrow_mut() = QuantActs::new());
}

/// Whether the integer kernels can use AVX-512 VNNI here.
fn vnni() -> bool {
    use std::sync::OnceLock;
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            isa() == Isa::Avx512
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Panels per parallel task for decode-sized batches: four when there are enough, so
/// one task can run four panels in lockstep (measured faster at batch 1 than an even
/// split into smaller tasks).
fn decode_panels_per_task(panels: usize, threads: usize) -> usize {
    (panels / (threads * 3)).clamp(1, 4)
}

/// Panels per parallel task for larger batches, 1 to 4: the largest size whose tasks
/// split most evenly over the threads (a region ends when its slowest thread does).
fn panels_per_task(panels: usize, threads: usize) -> usize {
    let slack = |ppt: usize| {
        let tasks = panels.div_ceil(ppt);
        let rounds = tasks.div_ceil(threads);
        // Panel-slots the busiest thread has beyond an even share.
        (rounds * ppt * threads).saturating_sub(panels) as f64 / threads as f64
    };
    (1..=4)
        .rev()
        .min_by(|&a, &b| slack(a).total_cmp(&slack(b)))
        .unwrap_or(1)
}

/// Quantizes `m` rows of `x` into `acts` (already sized), in parallel when given a pool
/// and enough rows to be worth it.
fn quantize_rows(
    pool: Option<&ThreadPool>,
    x: &[f32],
    m: usize,
    acts: &mut QuantActs,
    widen: bool,
) {
    let (k, block, bits) = (acts.k, acts.block, acts.bits);
    let nb = k / block;
    if widen {
        acts.wide.resize(acts::wide_len(m, k), 0);
    }
    match pool {
        Some(pool) if m >= 8 && pool.threads() > 1 => {
            struct Bufs(*mut i8, *mut i8, *mut f32, *mut f32, *mut i16, *mut i32);
            // SAFETY: each task writes only its own rows of the six buffers.
            unsafe impl Sync for Bufs {}
            let b = Bufs(
                acts.hi.as_mut_ptr(),
                acts.lo.as_mut_ptr(),
                acts.scale.as_mut_ptr(),
                acts.sum.as_mut_ptr(),
                acts.wide.as_mut_ptr(),
                acts.csum.as_mut_ptr(),
            );
            let b = &b;
            let per = m.div_ceil(pool.threads() * 2);
            pool.run(m.div_ceil(per), &|t| {
                for i in t * per..((t + 1) * per).min(m) {
                    // SAFETY: row i's slices are disjoint from every other row's and lie
                    // within the buffers (`wide` holds `wide_len(m, k)` when `widen`), which
                    // outlive pool.run.
                    let row = unsafe {
                        ActRow {
                            hi: std::slice::from_raw_parts_mut(b.0.add(i * k), k),
                            lo: std::slice::from_raw_parts_mut(b.1.add(i * k), k),
                            scale: std::slice::from_raw_parts_mut(b.2.add(i * nb), nb),
                            sum: std::slice::from_raw_parts_mut(b.3.add(i * nb), nb),
                        }
                    };
                    acts::quantize_row(&x[i * k..(i + 1) * k], block, row, bits);
                    // SAFETY: as above; the row's quantizing is done.
                    unsafe {
                        acts::sum_codes(
                            std::slice::from_raw_parts(b.0.add(i * k), k),
                            std::slice::from_raw_parts(b.1.add(i * k), k),
                            block,
                            std::slice::from_raw_parts_mut(b.5.add(i * nb), nb),
                        );
                    }
                    if widen {
                        // SAFETY: as above; the row's quantizing is done.
                        unsafe {
                            acts::widen_row(
                                i,
                                std::slice::from_raw_parts(b.0.add(i * k), k),
                                std::slice::from_raw_parts(b.1.add(i * k), k),
                                b.4,
                            );
                        }
                    }
                }
            });
        }
        _ => {
            for i in 0..m {
                acts::quantize_row(&x[i * k..(i + 1) * k], block, acts.row_mut(i), bits);
                let (r, c) = (i * k..(i + 1) * k, i * nb..(i + 1) * nb);
                acts::sum_codes(&acts.hi[r.clone()], &acts.lo[r], block, &mut acts.csum[c]);
            }
            if widen {
                let wide = acts.wide.as_mut_ptr();
                for i in 0..m {
                    let r = i * k..(i + 1) * k;
                    // SAFETY: `wide` holds `wide_len(m, k)` elements.
                    unsafe { acts::widen_row(i, &acts.hi[r.clone()], &acts.lo[r], wide) };
                }
            }
        }
    }
    acts.has_wide = widen;
}

/// Whether `m` rows of `bits`-bit codes are multiplied against `c` as 16-bit words
/// (`vpdpwssd`), its codes widened once per task: 16-bit codes otherwise take two
/// `vpdpbusd` and a shift to combine, and 5- and 6-bit codes an unpacking per row tile,
/// but the widened codes are 2–4 times the packed bytes, which enough row tiles must
/// repay. Where each format starts to gain was measured with the `matmul_speed` example
/// (docs/benchmarks.md): Q6_K and Q5_K from 16 rows (even at 12), Q4_K and Q4_0 at 32
/// (behind at 16–24), Q8_0 only at 64 (behind at 16 and 32).
///
/// Without VNNI the AVX2 kernel takes words (`vpmaddwd`) instead of byte pairs for every
/// format, from fewer rows: there the byte kernel also unpacks the codes in every 3-row
/// tile and widens each row's two 16-bit sums per block. `matmul_speed`, one thread, on
/// the Zen 3 EPYC (docs/benchmarks.md): Q8_0 (bytes above 127, split into nibbles for
/// `vpmaddubsw`) gains from 3 rows (31.7 against 24.5 GMAC/s; at 2, 19.9 against 22.3);
/// Q5_K and Q6_K from 4 (behind at 3); Q4_K and Q4_0 behind at 6–8, even to ahead at 12,
/// ahead from 16.
///
/// With 8-bit codes (`hi` zero) the AVX2 byte kernel takes one `vpmaddubsw` per 32
/// products, so words gain only where bytes pay extra: Q8_0's split nibbles (ahead from
/// 24 rows: 52.0 against 47.7 GMAC/s, 56.9 against 46.5 at 128; behind up to 16, 47.7
/// against 50.1) and Q6_K's 6-bit unpacking and widening every second sum (even at 20,
/// ahead from 24: 53.7 against 51.1, 56.3 against 50.5 at 64); Q4_K, Q4_0 and Q5_K stay
/// faster as bytes at every row count (Q4_K 83.2 against 58.1 at 128).
fn wide_rows(c: &pack::CodePanels, m: usize, bits: u8) -> bool {
    let vnni = vnni();
    if bits != 16 {
        let min = match c.codes {
            pack::CodeBits::Bytes | pack::CodeBits::Nib4Hi2 => 24,
            pack::CodeBits::Nib4 | pack::CodeBits::Nib4Hi1 => return false,
        };
        return !vnni && isa() != Isa::Scalar && m >= min;
    }
    let min = match (c.codes, vnni) {
        (pack::CodeBits::Nib4Hi1 | pack::CodeBits::Nib4Hi2, true) => MR + 1,
        (pack::CodeBits::Nib4, true) => 32,
        (pack::CodeBits::Bytes, true) => 64,
        (pack::CodeBits::Nib4Hi1 | pack::CodeBits::Nib4Hi2, false) => 4,
        (pack::CodeBits::Nib4, false) => 12,
        (pack::CodeBits::Bytes, false) => 3,
    };
    m >= min && (vnni || isa() != Isa::Scalar)
}

/// Runs `f(p0, p1, y)` for tasks of `ppt` consecutive panels; each task writes only
/// columns `p0*16..p1*16` of the rows of `y` (`m` rows of `n`), shared as a `SharedOut`.
fn panel_tasks(
    pool: &ThreadPool,
    n: usize,
    ppt: usize,
    y: &mut [f32],
    m: usize,
    f: &(dyn Fn(usize, usize, &SharedOut) + Sync),
) {
    let panels = n.div_ceil(PANEL);
    let y = SharedOut::new(&mut y[..m * n]);
    let y = &y;
    pool.run(panels.div_ceil(ppt), &|t| {
        let p0 = t * ppt;
        let p1 = (p0 + ppt).min(panels);
        f(p0, p1, y);
    });
}

/// `y[i*n + j] = Σ_k x[i*k + kk] * W[j][kk]` for `i < m`, where `W` is `n × k`.
pub fn matmul(pool: &ThreadPool, w: &PackedMatrix, x: &[f32], m: usize, y: &mut [f32]) {
    let (n, k) = (w.rows(), w.cols());
    assert!(
        x.len() >= m * k && y.len() >= m * n,
        "matmul shapes: x {} y {} m {m} n {n} k {k}",
        x.len(),
        y.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    match &w.data {
        Packed::F32(v) => matmul_f32(pool, v, n, k, x, m, y),
        Packed::Codes(c) => ACTS.with(|a| {
            let mut acts = a.borrow_mut();
            acts.resize(m, k, c.block, w.activation_bits());
            let widen = wide_rows(c, m, acts.bits);
            quantize_rows(Some(pool), x, m, &mut acts, widen);
            matmul_codes(pool, c, n, k, &acts, m, y);
        }),
    }
}

fn matmul_codes(
    pool: &ThreadPool,
    c: &pack::CodePanels,
    n: usize,
    k: usize,
    acts: &QuantActs,
    m: usize,
    y: &mut [f32],
) {
    let panels = n.div_ceil(PANEL);
    let ppt = if m <= DECODE_MAX_ROWS {
        decode_panels_per_task(panels, pool.threads())
    } else {
        panels_per_task(panels, pool.threads())
    };
    let (vnni, avx2) = (vnni(), isa() != Isa::Scalar);
    panel_tasks(pool, n, ppt, y, m, &|p0, p1, y| {
        #[cfg(target_arch = "x86_64")]
        if vnni {
            // SAFETY: avx512f/bw/vnni were detected; shapes were asserted by the caller
            // and are re-checked inside.
            unsafe { x86::codes_panels(c, k, n, p0, p1, acts, m, y) };
            return;
        } else if avx2 {
            // SAFETY: `isa()` above scalar means avx2, fma and f16c were detected.
            unsafe { avx2::codes_panels(c, k, n, p0, p1, acts, m, y) };
            return;
        }
        for p in p0..p1 {
            scalar::codes_gemm(c, k, p, acts, 0..m, y, n, (n - p * PANEL).min(PANEL));
        }
    });
}

fn matmul_f32(
    pool: &ThreadPool,
    v: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let panels = n.div_ceil(PANEL);
    let ppt = panels_per_task(panels, pool.threads());
    panel_tasks(pool, n, ppt, y, m, &|p0, p1, y| {
        let panels: Vec<&[f32]> = (p0..p1)
            .map(|p| &v[p * k * PANEL..(p + 1) * k * PANEL])
            .collect();
        // Row tiles outside, panels inside: a tile of activation rows stays in cache
        // while every panel of the task passes over it.
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            tile_panels(
                &x[i0 * k..],
                rows,
                k,
                &panels,
                &y.from(i0 * n),
                n,
                p0 * PANEL,
                n,
            );
        }
    });
}

/// `rows ≤ MR` activation rows against consecutive f32 panels (`[k][16]` each)
/// starting at column `col0` of `y` (row stride `ldy`, `n` columns).
#[allow(clippy::too_many_arguments)]
fn tile_panels(
    x: &[f32],
    rows: usize,
    k: usize,
    panels: &[&[f32]],
    y: &SharedOut,
    ldy: usize,
    col0: usize,
    n: usize,
) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected; the slices hold the shapes passed.
        Isa::Avx512 => unsafe { x86::tile_panels(x, rows, k, panels, y, ldy, col0, n) },
        _ => {
            for (q, wp) in panels.iter().enumerate() {
                let c = col0 + q * PANEL;
                scalar::panel_gemm(x, rows, k, wp, y, ldy, c, (n - c).min(PANEL));
            }
        }
    }
}

/// The scalar twins, public for tests and for comparison runs.
pub mod reference {
    pub use super::scalar::matmul;
}

#[cfg(test)]
mod tests;
