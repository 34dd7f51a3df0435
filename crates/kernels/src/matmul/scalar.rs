//! The reference arithmetic. The SIMD kernels must match it bit for bit.
// Panels are indexed [k][lane] on purpose: iterator chains obscure the layout.
#![allow(clippy::needless_range_loop)]

use super::acts::QuantActs;
use super::pack::{CodePanels, Packed, PackedMatrix, ScaleBits, PANEL};
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
///
/// `SuperI8` (Q6_K) instead takes per block the exact `J = Σ (code - 32) * sc * c` (at
/// most 16 · 4096 · 32512 < 2³¹ in magnitude), `part = fma(J, s, part)`, and per
/// super-block `acc = fma(part, d, acc)`: its blocks are 16 codes, so the per-block
/// multiply and min step of the general form were a third of its kernel's vector ops.
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
    let folded = w.scales == ScaleBits::SuperI8;
    let last = w.scales.blocks_per_group() - 1;
    for i in rows {
        for l in 0..valid {
            let mut acc = 0f32;
            let mut part = 0f32;
            for b in 0..nb {
                let at = w.block_at(p, nb, b);
                let code = |kk: usize| acts.code(i, b * w.block + kk);
                let (s, sum) = (acts.scale[i * nb + b], acts.sum[i * nb + b]);
                if folded {
                    let sc = w.sub_scale(at, l);
                    let dot: i32 = (0..w.block)
                        .map(|kk| (w.code(at, l, kk) as i32 - 32) * sc * code(kk))
                        .sum();
                    part = (dot as f32).mul_add(s, part);
                    if at.j == last {
                        acc = part.mul_add(w.super_d(at, l), acc);
                        part = 0.0;
                    }
                    continue;
                }
                let dot: i32 = (0..w.block)
                    .map(|kk| w.code(at, l, kk) as i32 * code(kk))
                    .sum();
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
