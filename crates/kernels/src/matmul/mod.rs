//! `y = x · Wᵀ` for quantized `W`, batched over activation rows.
//!
//! Weights are repacked at load into panels of 16 rows stored k-major, so one vector load
//! holds element `k` of 16 rows. Every output is the same sequential FMA chain
//! `acc = fma(x[k], w[k], acc)` over `k = 0..K`, with `w[k] = fma(code, scale, min)`
//! computed exactly, on every path:
//! * up to four activation rows (decode), weights are dequantized in registers;
//! * more rows, a pair of panels is dequantized once into a scratch buffer and reused
//!   by every row.
//!
//! So a row's result never depends on which other rows share the batch, and each SIMD
//! kernel is bitwise equal to its scalar twin.

mod pack;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use pack::Packed;
pub use pack::{PackedMatrix, PANEL};

use crate::pool::ThreadPool;
use crate::{isa, Isa};
use std::cell::RefCell;

/// Activation rows per register tile on the scratch path.
pub const MR: usize = 8;

/// Up to this many activation rows, dequantizing in registers beats a scratch panel.
const FUSED_MAX_ROWS: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of `y`; see `matmul`.
unsafe impl Sync for OutPtr {}

/// Panels per parallel task on the register-dequant path: four when there are enough, so
/// one task can run four panels in lockstep (measured faster at batch 1 than an even
/// split into smaller tasks).
fn fused_panels_per_task(panels: usize, threads: usize) -> usize {
    (panels / (threads * 3)).clamp(1, 4)
}

/// Panels per parallel task on the scratch path, 1 to 4: the largest size whose tasks
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
    let panels = w.panels();
    let out = OutPtr(y.as_mut_ptr());
    let out = &out;
    let fused = m <= FUSED_MAX_ROWS && isa() == Isa::Avx512 && !matches!(w.data, Packed::F32(_));
    let ppt = if fused {
        fused_panels_per_task(panels, pool.threads())
    } else {
        panels_per_task(panels, pool.threads())
    };
    pool.run(panels.div_ceil(ppt), &|t| {
        let p0 = t * ppt;
        let p1 = (p0 + ppt).min(panels);
        // SAFETY: task t writes only columns p0*16..p1*16 (clipped to n) of each of the m
        // rows of y; column ranges of different tasks are disjoint; y outlives pool.run.
        let y = unsafe { std::slice::from_raw_parts_mut(out.0, m * n) };
        if fused {
            fused_panels(w, p0, p1, x, m, y);
        } else {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let np = p1 - p0;
                if !matches!(w.data, Packed::F32(_)) {
                    s.resize(np * k * PANEL, 0.0);
                    for (q, chunk) in s.chunks_exact_mut(k * PANEL).enumerate() {
                        dequant_panel(w, p0 + q, chunk);
                    }
                }
                let panel = |q: usize| -> &[f32] {
                    match &w.data {
                        Packed::F32(v) => &v[(p0 + q) * k * PANEL..(p0 + q + 1) * k * PANEL],
                        _ => &s[q * k * PANEL..(q + 1) * k * PANEL],
                    }
                };
                // Row tiles outside, panels inside: a tile of activation rows stays in cache
                // while every panel of the task passes over it.
                let panels: Vec<&[f32]> = (0..np).map(panel).collect();
                for i0 in (0..m).step_by(MR) {
                    let rows = MR.min(m - i0);
                    tile_panels(
                        &x[i0 * k..],
                        rows,
                        k,
                        &panels,
                        &mut y[i0 * n..],
                        n,
                        p0 * PANEL,
                        n,
                    );
                }
            });
        }
    });
}

#[allow(unused_variables)]
fn fused_panels(w: &PackedMatrix, p0: usize, p1: usize, x: &[f32], m: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked avx512f and a quantized packing; shapes were asserted.
    unsafe {
        match m {
            1 => x86::fused::<1>(w, p0, p1, x, y),
            2 => x86::fused::<2>(w, p0, p1, x, y),
            3 => x86::fused::<3>(w, p0, p1, x, y),
            _ => x86::fused::<4>(w, p0, p1, x, y),
        }
    }
}

/// `rows ≤ MR` activation rows against consecutive dequantized panels (`[k][16]` each)
/// starting at column `col0` of `y` (row stride `ldy`, `n` columns).
#[allow(clippy::too_many_arguments)]
fn tile_panels(
    x: &[f32],
    rows: usize,
    k: usize,
    panels: &[&[f32]],
    y: &mut [f32],
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

/// Dequantizes panel `p` into `out` as `[k][16]` f32.
pub fn dequant_panel(w: &PackedMatrix, p: usize, out: &mut [f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::dequant_panel(w, p, out) },
        _ => scalar::dequant_panel(w, p, out),
    }
}

/// The scalar twins, public for tests and for comparison runs.
pub mod reference {
    pub use super::scalar::{dequant_panel, matmul};
}

#[cfg(test)]
mod tests;
