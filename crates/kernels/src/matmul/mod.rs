//! `y = x · Wᵀ` for quantized `W`, batched over activation rows.
//!
//! Weights are repacked at load into one of three layouts. A call walks panels of weight
//! rows: a panel is dequantized once into an f32 scratch (exactly `fma(q, scale, min)` per
//! element) and then multiplied with every activation row. Each output is a 16-lane FMA
//! chain over `k` followed by a fixed reduction tree, whatever the batch size or tile
//! shape, so a row's result never depends on which other rows share the batch.

mod pack;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use pack::Packed;
pub use pack::PackedMatrix;

use crate::pool::ThreadPool;
use crate::{isa, Isa};
use std::cell::RefCell;

/// Rows of activations per micro-tile.
pub const MR: usize = 4;
/// Weight rows per micro-tile.
pub const NR: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Weight rows per parallel task: small enough to balance two or more threads on the
/// narrow K/V projections, at most 64 so that a dequantized panel stays in L2.
fn panel_rows(n: usize, threads: usize) -> usize {
    let per = n.div_ceil(threads * 4);
    per.div_ceil(NR).clamp(1, 16) * NR
}

struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of `y`; see `matmul`.
unsafe impl Sync for OutPtr {}

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
    let panel = panel_rows(n, pool.threads());
    let n_tasks = n.div_ceil(panel);
    let out = OutPtr(y.as_mut_ptr());
    let out = &out;
    if m <= FUSED_MAX_ROWS && fused_applies(w) {
        pool.run(n_tasks, &|t| {
            let r0 = t * panel;
            let r1 = (r0 + panel).min(n);
            // SAFETY: as below, task t writes only columns r0..r1.
            let y = unsafe { std::slice::from_raw_parts_mut(out.0, m * n) };
            fused(w, r0, r1, x, m, y, n);
        });
        return;
    }
    pool.run(n_tasks, &|t| {
        let r0 = t * panel;
        let r1 = (r0 + panel).min(n);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let wrows: &[f32] = match &w.data {
                Packed::F32(v) => &v[r0 * k..r1 * k],
                _ => {
                    s.resize((r1 - r0) * k, 0.0);
                    dequant_rows(w, r0, r1, &mut s);
                    &s[..]
                }
            };
            // SAFETY: task t writes only columns r0..r1 of each of the m rows of y, and
            // the column ranges of different tasks are disjoint; y outlives pool.run.
            let y = unsafe { std::slice::from_raw_parts_mut(out.0, m * n) };
            panel_gemm(x, m, k, wrows, r1 - r0, y, n, r0);
        });
    });
}

/// Up to this many activation rows, weights are dequantized in registers per block
/// rather than into a scratch panel: with few rows the panel's store and reload would
/// cost more than the arithmetic it saves.
const FUSED_MAX_ROWS: usize = 4;

fn fused_applies(w: &PackedMatrix) -> bool {
    isa() == Isa::Avx512 && w.cols().is_multiple_of(32) && !matches!(w.data, Packed::F32(_))
}

#[allow(unused_variables)]
fn fused(w: &PackedMatrix, r0: usize, r1: usize, x: &[f32], m: usize, y: &mut [f32], ldy: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: fused_applies checked avx512f and the packing; shapes were asserted by matmul.
    unsafe {
        match m {
            1 => x86::fused_rows::<1>(w, r0, r1, x, y, ldy),
            2 => x86::fused_rows::<2>(w, r0, r1, x, y, ldy),
            3 => x86::fused_rows::<3>(w, r0, r1, x, y, ldy),
            _ => x86::fused_rows::<4>(w, r0, r1, x, y, ldy),
        }
    }
}

/// Multiplies `m` activation rows with `nw` dequantized weight rows, writing columns
/// `col0..col0+nw` of `y` (row stride `ldy`).
#[allow(clippy::too_many_arguments)]
fn panel_gemm(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    nw: usize,
    y: &mut [f32],
    ldy: usize,
    col0: usize,
) {
    for i0 in (0..m).step_by(MR) {
        let mr = MR.min(m - i0);
        for j0 in (0..nw).step_by(NR) {
            let nr = NR.min(nw - j0);
            let mut tile = [[0f32; NR]; MR];
            micro_tile(&x[i0 * k..], &w[j0 * k..], k, mr, nr, &mut tile);
            for (i, row) in tile.iter().enumerate().take(mr) {
                let base = (i0 + i) * ldy + col0 + j0;
                y[base..base + nr].copy_from_slice(&row[..nr]);
            }
        }
    }
}

/// One `mr × nr` tile of dot products (rows of `x` and `w` have stride `k`).
pub fn micro_tile(x: &[f32], w: &[f32], k: usize, mr: usize, nr: usize, out: &mut [[f32; NR]; MR]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::micro_tile(x, w, k, mr, nr, out) },
        _ => scalar::micro_tile(x, w, k, mr, nr, out),
    }
}

/// Dequantizes weight rows `r0..r1` into `out` (row-major, `cols` per row).
pub fn dequant_rows(w: &PackedMatrix, r0: usize, r1: usize, out: &mut [f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::dequant_rows(w, r0, r1, out) },
        _ => scalar::dequant_rows(w, r0, r1, out),
    }
}

/// The scalar twins, public for tests and for comparison runs.
pub mod reference {
    pub use super::scalar::{dequant_rows, micro_tile, reduce16};
}

#[cfg(test)]
mod tests;
