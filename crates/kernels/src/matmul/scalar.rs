//! The reference arithmetic. The SIMD kernels must match it bit for bit.
// Register tiles are indexed [row][col] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::pack::{Packed, PackedMatrix};
use super::{MR, NR};

/// The fixed reduction tree of 16 lanes: halves, quarters, pairs, then the last two.
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut r8 = [0f32; 8];
    for l in 0..8 {
        r8[l] = a[l] + a[l + 8];
    }
    let mut r4 = [0f32; 4];
    for l in 0..4 {
        r4[l] = r8[l] + r8[l + 4];
    }
    let r2 = [r4[0] + r4[2], r4[1] + r4[3]];
    r2[0] + r2[1]
}

pub fn micro_tile(x: &[f32], w: &[f32], k: usize, mr: usize, nr: usize, out: &mut [[f32; NR]; MR]) {
    for i in 0..mr {
        for j in 0..nr {
            let xr = &x[i * k..i * k + k];
            let wr = &w[j * k..j * k + k];
            let mut acc = [0f32; 16];
            for (xc, wc) in xr.chunks(16).zip(wr.chunks(16)) {
                for l in 0..xc.len() {
                    acc[l] = xc[l].mul_add(wc[l], acc[l]);
                }
            }
            out[i][j] = reduce16(&acc);
        }
    }
}

pub fn dequant_rows(w: &PackedMatrix, r0: usize, r1: usize, out: &mut [f32]) {
    let k = w.cols();
    let (e0, e1) = (r0 * k, r1 * k);
    let out = &mut out[..e1 - e0];
    match &w.data {
        Packed::F32(v) => out.copy_from_slice(&v[e0..e1]),
        Packed::Q4 { qs, scale, min } => {
            for (bi, o) in out.chunks_exact_mut(32).enumerate() {
                let b = e0 / 32 + bi;
                let q = &qs[b * 16..b * 16 + 16];
                for j in 0..16 {
                    o[j] = ((q[j] & 0xF) as f32).mul_add(scale[b], min[b]);
                    o[j + 16] = ((q[j] >> 4) as f32).mul_add(scale[b], min[b]);
                }
            }
        }
        Packed::I8 {
            block,
            qs,
            scale,
            min,
        } => {
            for (bi, o) in out.chunks_exact_mut(*block).enumerate() {
                let b = e0 / block + bi;
                let mn = min.as_ref().map_or(0.0, |m| m[b]);
                for (j, v) in o.iter_mut().enumerate() {
                    *v = (qs[b * block + j] as f32).mul_add(scale[b], mn);
                }
            }
        }
    }
}
