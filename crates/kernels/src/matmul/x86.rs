//! AVX-512 kernels, bitwise twins of `scalar.rs`.
// Register tiles are indexed [row][panel] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::pack::{i8_block_bytes, Packed, PackedMatrix, PANEL, Q4_BLOCK_BYTES};
use super::MR;
use std::arch::x86_64::*;

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_cols(y: *mut f32, v: __m512, valid: usize) {
    if valid >= PANEL {
        _mm512_storeu_ps(y, v);
    } else {
        _mm512_mask_storeu_ps(y, ((1u32 << valid) - 1) as u16, v);
    }
}

/// # Safety
/// Requires avx512f; `out` holds `cols * 16` values.
#[target_feature(enable = "avx512f")]
pub unsafe fn dequant_panel(w: &PackedMatrix, p: usize, out: &mut [f32]) {
    let k = w.cols();
    assert!(out.len() >= k * PANEL);
    let op = out.as_mut_ptr();
    match &w.data {
        Packed::F32(v) => out[..k * PANEL].copy_from_slice(&v[p * k * PANEL..(p + 1) * k * PANEL]),
        Packed::Q4(d) => {
            let nb = k / 32;
            assert!(d.len() >= (p + 1) * nb * Q4_BLOCK_BYTES);
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nb {
                let base = d.as_ptr().add((p * nb + b) * Q4_BLOCK_BYTES);
                let s = _mm512_loadu_ps(base as *const f32);
                let m = _mm512_loadu_ps(base.add(64) as *const f32);
                for t in 0..16 {
                    let raw = _mm_loadu_si128(base.add(128 + t * 16) as *const __m128i);
                    let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(raw, mask)));
                    let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16::<4>(raw), mask)));
                    _mm512_storeu_ps(op.add((b * 32 + 2 * t) * PANEL), _mm512_fmadd_ps(lo, s, m));
                    _mm512_storeu_ps(op.add((b * 32 + 2 * t + 1) * PANEL), _mm512_fmadd_ps(hi, s, m));
                }
            }
        }
        Packed::I8 { block, data: d } => {
            let block = *block;
            let nb = k / block;
            let bytes = i8_block_bytes(block);
            assert!(d.len() >= (p + 1) * nb * bytes);
            for b in 0..nb {
                let base = d.as_ptr().add((p * nb + b) * bytes);
                let s = _mm512_loadu_ps(base as *const f32);
                let m = _mm512_loadu_ps(base.add(64) as *const f32);
                for kk in 0..block {
                    let raw = _mm_loadu_si128(base.add(128 + kk * 16) as *const __m128i);
                    let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
                    _mm512_storeu_ps(op.add((b * block + kk) * PANEL), _mm512_fmadd_ps(f, s, m));
                }
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn gemm_tile<const M: usize>(x: *const f32, k: usize, wp: *const f32, y: *mut f32, ldy: usize, valid: usize) {
    let mut acc = [_mm512_setzero_ps(); M];
    for kk in 0..k {
        let wv = _mm512_loadu_ps(wp.add(kk * PANEL));
        for i in 0..M {
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(i * k + kk)), wv, acc[i]);
        }
    }
    for i in 0..M {
        store_cols(y.add(i * ldy), acc[i], valid);
    }
}

/// # Safety
/// Requires avx512f; `x` holds `m` rows of `k`, `wp` a `[k][16]` panel, `y` rows of
/// stride `ldy` with room for columns `col0..col0+valid`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn panel_gemm(x: &[f32], m: usize, k: usize, wp: &[f32], y: &mut [f32], ldy: usize, col0: usize, valid: usize) {
    assert!(x.len() >= m * k && wp.len() >= k * PANEL && valid <= PANEL && (m == 0 || y.len() >= (m - 1) * ldy + col0 + valid));
    let (xp, w, yp) = (x.as_ptr(), wp.as_ptr(), y.as_mut_ptr().add(col0));
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        let (xi, yi) = (xp.add(i * k), yp.add(i * ldy));
        match rows {
            8 => gemm_tile::<8>(xi, k, w, yi, ldy, valid),
            7 => gemm_tile::<7>(xi, k, w, yi, ldy, valid),
            6 => gemm_tile::<6>(xi, k, w, yi, ldy, valid),
            5 => gemm_tile::<5>(xi, k, w, yi, ldy, valid),
            4 => gemm_tile::<4>(xi, k, w, yi, ldy, valid),
            3 => gemm_tile::<3>(xi, k, w, yi, ldy, valid),
            2 => gemm_tile::<2>(xi, k, w, yi, ldy, valid),
            _ => gemm_tile::<1>(xi, k, w, yi, ldy, valid),
        }
        i += rows;
    }
}

/// Panels `p0..p1` times `M ≤ 4` activation rows, dequantizing in registers: `P` panels
/// at a time give `M × P` independent FMA chains.
///
/// # Safety
/// Requires avx512f; `w` is Q4 or I8 packed; `x` holds `M` rows of `cols`; `y` holds `M`
/// rows of `w.rows()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn fused<const M: usize>(w: &PackedMatrix, p0: usize, p1: usize, x: &[f32], y: &mut [f32]) {
    let (n, k) = (w.rows(), w.cols());
    assert!(x.len() >= M * k && y.len() >= M * n && p1 <= w.panels());
    let mut p = p0;
    if M <= 2 {
        while p + 4 <= p1 {
            fused_group::<M, 4>(w, p, x, y);
            p += 4;
        }
    }
    while p + 2 <= p1 {
        fused_group::<M, 2>(w, p, x, y);
        p += 2;
    }
    while p < p1 {
        fused_group::<M, 1>(w, p, x, y);
        p += 1;
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn fused_group<const M: usize, const P: usize>(w: &PackedMatrix, p0: usize, x: &[f32], y: &mut [f32]) {
    let (n, k) = (w.rows(), w.cols());
    let xp = x.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); P]; M];
    match &w.data {
        Packed::Q4(d) => {
            let nb = k / 32;
            assert!(d.len() >= (p0 + P) * nb * Q4_BLOCK_BYTES);
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nb {
                let mut base = [std::ptr::null::<u8>(); P];
                let mut s = [_mm512_setzero_ps(); P];
                let mut m = [_mm512_setzero_ps(); P];
                for q in 0..P {
                    base[q] = d.as_ptr().add(((p0 + q) * nb + b) * Q4_BLOCK_BYTES);
                    s[q] = _mm512_loadu_ps(base[q] as *const f32);
                    m[q] = _mm512_loadu_ps(base[q].add(64) as *const f32);
                }
                for t in 0..16 {
                    let kk = b * 32 + 2 * t;
                    for q in 0..P {
                        let raw = _mm_loadu_si128(base[q].add(128 + t * 16) as *const __m128i);
                        let lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(raw, mask))), s[q], m[q]);
                        let hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16::<4>(raw), mask))), s[q], m[q]);
                        for i in 0..M {
                            acc[i][q] = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(i * k + kk)), lo, acc[i][q]);
                            acc[i][q] = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(i * k + kk + 1)), hi, acc[i][q]);
                        }
                    }
                }
            }
        }
        Packed::I8 { block, data: d } => {
            let block = *block;
            let nb = k / block;
            let bytes = i8_block_bytes(block);
            assert!(d.len() >= (p0 + P) * nb * bytes);
            for b in 0..nb {
                let mut base = [std::ptr::null::<u8>(); P];
                let mut s = [_mm512_setzero_ps(); P];
                let mut m = [_mm512_setzero_ps(); P];
                for q in 0..P {
                    base[q] = d.as_ptr().add(((p0 + q) * nb + b) * bytes);
                    s[q] = _mm512_loadu_ps(base[q] as *const f32);
                    m[q] = _mm512_loadu_ps(base[q].add(64) as *const f32);
                }
                for kb in 0..block {
                    let kk = b * block + kb;
                    for q in 0..P {
                        let raw = _mm_loadu_si128(base[q].add(128 + kb * 16) as *const __m128i);
                        let wv = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), s[q], m[q]);
                        for i in 0..M {
                            acc[i][q] = _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(i * k + kk)), wv, acc[i][q]);
                        }
                    }
                }
            }
        }
        Packed::F32(_) => unreachable!("dense weights take the scratch path"),
    }
    for i in 0..M {
        for q in 0..P {
            let col = (p0 + q) * PANEL;
            store_cols(y.as_mut_ptr().add(i * n + col), acc[i][q], (n - col).min(PANEL));
        }
    }
}
