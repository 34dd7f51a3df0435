//! The reference arithmetic. The SIMD kernels must match it bit for bit.
// Panels are indexed [k][lane] on purpose: iterator chains obscure the layout.
#![allow(clippy::needless_range_loop)]

use super::acts::QuantActs;
use super::pack::{CodePanels, Packed, PackedMatrix, PANEL};
use super::shared_out::SharedOut;

/// f32 weights: one sequential FMA chain per output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_gemm(
    x: &[f32],
    m: usize,
    k: usize,
    wp: &[f32],
    y: &SharedOut,
    ldy: usize,
    col0: usize,
    valid: usize,
) {
    for i in 0..m {
        for l in 0..valid {
            let mut acc = 0f32;
            for kk in 0..k {
                acc = x[i * k + kk].mul_add(wp[kk * PANEL + l], acc);
            }
            y.set(i * ldy + col0 + l, acc);
        }
    }
}

/// Integer codes: per block the exact integer `I = Σ code * c`, then
/// `acc = fma(I, scale * s, acc)` and `acc = fma(min, sum, acc)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn codes_gemm(
    w: &CodePanels,
    k: usize,
    p: usize,
    acts: &QuantActs,
    rows: std::ops::Range<usize>,
    y: &SharedOut,
    ldy: usize,
    valid: usize,
) {
    let nb = k / w.block;
    for i in rows {
        for l in 0..valid {
            let mut acc = 0f32;
            for b in 0..nb {
                let at = w.block_at(p, nb, b);
                let dot: i32 = (0..w.block)
                    .map(|kk| w.code(at, l, kk) as i32 * acts.code(i, b * w.block + kk))
                    .sum();
                let (s, sum) = (acts.scale[i * nb + b], acts.sum[i * nb + b]);
                acc = (dot as f32).mul_add(w.scale(at, l) * s, acc);
                acc = w.min(at, l).mul_add(sum, acc);
            }
            y.set(i * ldy + p * PANEL + l, acc);
        }
    }
}

/// The whole product, one output at a time.
pub fn matmul(w: &PackedMatrix, x: &[f32], m: usize, y: &mut [f32]) {
    let (n, k) = (w.rows(), w.cols());
    let y = &SharedOut::new(y);
    match &w.data {
        Packed::F32(v) => {
            for p in 0..w.panels() {
                let panel = &v[p * k * PANEL..(p + 1) * k * PANEL];
                panel_gemm(x, m, k, panel, y, n, p * PANEL, (n - p * PANEL).min(PANEL));
            }
        }
        Packed::Codes(c) => {
            let mut acts = QuantActs::new();
            acts.resize(m, k, c.block, w.activation_bits());
            super::quantize_rows(None, x, m, &mut acts, false);
            for p in 0..w.panels() {
                codes_gemm(c, k, p, &acts, 0..m, y, n, (n - p * PANEL).min(PANEL));
            }
        }
    }
}
