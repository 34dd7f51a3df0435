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
                    let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                        _mm_srli_epi16::<4>(raw),
                        mask,
                    )));
                    _mm512_storeu_ps(op.add((b * 32 + 2 * t) * PANEL), _mm512_fmadd_ps(lo, s, m));
                    _mm512_storeu_ps(
                        op.add((b * 32 + 2 * t + 1) * PANEL),
                        _mm512_fmadd_ps(hi, s, m),
                    );
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
unsafe fn gemm_tile<const M: usize, const P: usize>(
    x: *const f32,
    k: usize,
    wp: [*const f32; P],
    y: [*mut f32; P],
    ldy: usize,
    valid: [usize; P],
) {
    let mut acc = [[_mm512_setzero_ps(); P]; M];
    for kk in 0..k {
        let mut wv = [_mm512_setzero_ps(); P];
        for q in 0..P {
            wv[q] = _mm512_loadu_ps(wp[q].add(kk * PANEL));
        }
        for i in 0..M {
            let xb = _mm512_set1_ps(*x.add(i * k + kk));
            for q in 0..P {
                acc[i][q] = _mm512_fmadd_ps(xb, wv[q], acc[i][q]);
            }
        }
    }
    for i in 0..M {
        for q in 0..P {
            store_cols(y[q].add(i * ldy), acc[i][q], valid[q]);
        }
    }
}

/// One tile of `rows ≤ MR` activation rows against `P` panels.
#[target_feature(enable = "avx512f")]
unsafe fn gemm_rows<const P: usize>(
    rows: usize,
    x: *const f32,
    k: usize,
    wp: [*const f32; P],
    y: [*mut f32; P],
    ldy: usize,
    valid: [usize; P],
) {
    match rows {
        8 => gemm_tile::<8, P>(x, k, wp, y, ldy, valid),
        7 => gemm_tile::<7, P>(x, k, wp, y, ldy, valid),
        6 => gemm_tile::<6, P>(x, k, wp, y, ldy, valid),
        5 => gemm_tile::<5, P>(x, k, wp, y, ldy, valid),
        4 => gemm_tile::<4, P>(x, k, wp, y, ldy, valid),
        3 => gemm_tile::<3, P>(x, k, wp, y, ldy, valid),
        2 => gemm_tile::<2, P>(x, k, wp, y, ldy, valid),
        _ => gemm_tile::<1, P>(x, k, wp, y, ldy, valid),
    }
}

/// `rows ≤ MR` activation rows (stride `k`) against panels `panels` (`[k][16]` each),
/// writing columns from `col0` of `y` (stride `ldy`, `n` columns in all).
///
/// # Safety
/// Requires avx512f; shapes as described.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile_panels(
    x: &[f32],
    rows: usize,
    k: usize,
    panels: &[&[f32]],
    y: &mut [f32],
    ldy: usize,
    col0: usize,
    n: usize,
) {
    assert!(rows <= MR && x.len() >= rows * k && panels.iter().all(|p| p.len() >= k * PANEL));
    assert!(col0 + PANEL * (panels.len() - 1) < n && y.len() >= (rows - 1) * ldy + n);
    let xp = x.as_ptr();
    let valid = |q: usize| (n - col0 - q * PANEL).min(PANEL);
    let y0 = y.as_mut_ptr();
    let yq = |q: usize| y0.add(col0 + q * PANEL);
    let mut q = 0;
    while q + 2 <= panels.len() {
        gemm_rows::<2>(
            rows,
            xp,
            k,
            [panels[q].as_ptr(), panels[q + 1].as_ptr()],
            [yq(q), yq(q + 1)],
            ldy,
            [valid(q), valid(q + 1)],
        );
        q += 2;
    }
    if q < panels.len() {
        gemm_rows::<1>(rows, xp, k, [panels[q].as_ptr()], [yq(q)], ldy, [valid(q)]);
    }
}

/// Panels `p0..p1` times `M ≤ 4` activation rows, dequantizing in registers: `P` panels
/// at a time give `M × P` independent FMA chains.
///
/// # Safety
/// Requires avx512f; `w` is Q4 or I8 packed; `x` holds `M` rows of `cols`; `y` holds `M`
/// rows of `w.rows()`.
#[target_feature(enable = "avx512f")]
pub unsafe fn fused<const M: usize>(
    w: &PackedMatrix,
    p0: usize,
    p1: usize,
    x: &[f32],
    y: &mut [f32],
) {
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
unsafe fn fused_group<const M: usize, const P: usize>(
    w: &PackedMatrix,
    p0: usize,
    x: &[f32],
    y: &mut [f32],
) {
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
                        let lo = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(raw, mask))),
                            s[q],
                            m[q],
                        );
                        let hi = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                                _mm_srli_epi16::<4>(raw),
                                mask,
                            ))),
                            s[q],
                            m[q],
                        );
                        for i in 0..M {
                            acc[i][q] =
                                _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(i * k + kk)), lo, acc[i][q]);
                            acc[i][q] = _mm512_fmadd_ps(
                                _mm512_set1_ps(*xp.add(i * k + kk + 1)),
                                hi,
                                acc[i][q],
                            );
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
                        let wv = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)),
                            s[q],
                            m[q],
                        );
                        for i in 0..M {
                            acc[i][q] =
                                _mm512_fmadd_ps(_mm512_set1_ps(*xp.add(i * k + kk)), wv, acc[i][q]);
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
            store_cols(
                y.as_mut_ptr().add(i * n + col),
                acc[i][q],
                (n - col).min(PANEL),
            );
        }
    }
}
