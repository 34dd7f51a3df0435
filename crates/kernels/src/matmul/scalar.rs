//! The reference arithmetic. The SIMD kernels must match it bit for bit.
// Panels are indexed [k][lane] on purpose: iterator chains obscure the layout.
#![allow(clippy::needless_range_loop)]

use super::pack::{i8_block_bytes, Packed, PackedMatrix, PANEL, Q4_BLOCK_BYTES};

fn f32_at(d: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

pub fn dequant_panel(w: &PackedMatrix, p: usize, out: &mut [f32]) {
    let k = w.cols();
    match &w.data {
        Packed::F32(v) => out[..k * PANEL].copy_from_slice(&v[p * k * PANEL..(p + 1) * k * PANEL]),
        Packed::Q4(d) => {
            let nb = k / 32;
            for b in 0..nb {
                let base = (p * nb + b) * Q4_BLOCK_BYTES;
                for t in 0..16 {
                    for l in 0..PANEL {
                        let (s, m) = (f32_at(d, base + 4 * l), f32_at(d, base + 64 + 4 * l));
                        let byte = d[base + 128 + t * PANEL + l];
                        out[(b * 32 + 2 * t) * PANEL + l] = ((byte & 0xF) as f32).mul_add(s, m);
                        out[(b * 32 + 2 * t + 1) * PANEL + l] = ((byte >> 4) as f32).mul_add(s, m);
                    }
                }
            }
        }
        Packed::I8 { block, data: d } => {
            let nb = k / block;
            let bytes = i8_block_bytes(*block);
            for b in 0..nb {
                let base = (p * nb + b) * bytes;
                for kk in 0..*block {
                    for l in 0..PANEL {
                        let (s, m) = (f32_at(d, base + 4 * l), f32_at(d, base + 64 + 4 * l));
                        let code = d[base + 128 + kk * PANEL + l] as i8;
                        out[(b * block + kk) * PANEL + l] = (code as f32).mul_add(s, m);
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_gemm(
    x: &[f32],
    m: usize,
    k: usize,
    wp: &[f32],
    y: &mut [f32],
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
            y[i * ldy + col0 + l] = acc;
        }
    }
}

/// The whole product, one output at a time.
pub fn matmul(w: &PackedMatrix, x: &[f32], m: usize, y: &mut [f32]) {
    let (n, k) = (w.rows(), w.cols());
    let mut panel = vec![0f32; k * PANEL];
    for p in 0..w.panels() {
        dequant_panel(w, p, &mut panel);
        panel_gemm(x, m, k, &panel, y, n, p * PANEL, (n - p * PANEL).min(PANEL));
    }
}
