//! AVX-512 kernels, bitwise twins of `scalar.rs`.
// Register tiles are indexed [row][col] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::pack::{Packed, PackedMatrix};
use super::{MR, NR};
use std::arch::x86_64::*;

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce16(v: __m512) -> f32 {
    let r8 = _mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
    );
    let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps::<1>(r8));
    let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
    let r1 = _mm_add_ss(r2, _mm_shuffle_ps::<0b01>(r2, r2));
    _mm_cvtss_f32(r1)
}

#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn tile<const M: usize, const N: usize>(
    x: &[f32],
    w: &[f32],
    k: usize,
    out: &mut [[f32; NR]; MR],
) {
    let mut acc = [[_mm512_setzero_ps(); N]; M];
    let xp = x.as_ptr();
    let wp = w.as_ptr();
    let full = k / 16;
    for kb in 0..full {
        let mut wv = [_mm512_setzero_ps(); N];
        for j in 0..N {
            // SAFETY: rows j < N of w have k elements each; kb*16+16 <= k.
            wv[j] = _mm512_loadu_ps(wp.add(j * k + kb * 16));
        }
        for i in 0..M {
            let xv = _mm512_loadu_ps(xp.add(i * k + kb * 16));
            for j in 0..N {
                acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
    }
    let rem = k - full * 16;
    if rem > 0 {
        let mask: __mmask16 = (1u32 << rem) as u16 - 1;
        for i in 0..M {
            let xv = _mm512_maskz_loadu_ps(mask, xp.add(i * k + full * 16));
            for j in 0..N {
                let wv = _mm512_maskz_loadu_ps(mask, wp.add(j * k + full * 16));
                acc[i][j] = _mm512_fmadd_ps(xv, wv, acc[i][j]);
            }
        }
    }
    for i in 0..M {
        for j in 0..N {
            out[i][j] = reduce16(acc[i][j]);
        }
    }
}

/// # Safety
/// The CPU must support avx512f and avx512dq; `x` holds `mr` rows and `w` `nr` rows of `k`.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn micro_tile(
    x: &[f32],
    w: &[f32],
    k: usize,
    mr: usize,
    nr: usize,
    out: &mut [[f32; NR]; MR],
) {
    assert!(x.len() >= mr * k && w.len() >= nr * k && mr <= MR && nr <= NR);
    macro_rules! go {
        ($($m:literal $n:literal),*) => {
            match (mr, nr) {
                $(($m, $n) => tile::<$m, $n>(x, w, k, out),)*
                _ => {}
            }
        };
    }
    go!(1 1, 1 2, 1 3, 1 4, 2 1, 2 2, 2 3, 2 4, 3 1, 3 2, 3 3, 3 4, 4 1, 4 2, 4 3, 4 4);
}

/// # Safety
/// The CPU must support avx512f; `out` holds at least `(r1 - r0) * cols` values.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn dequant_rows(w: &PackedMatrix, r0: usize, r1: usize, out: &mut [f32]) {
    let k = w.cols();
    let (e0, e1) = (r0 * k, r1 * k);
    assert!(out.len() >= e1 - e0);
    let op = out.as_mut_ptr();
    match &w.data {
        Packed::F32(v) => out[..e1 - e0].copy_from_slice(&v[e0..e1]),
        Packed::Q4 { qs, scale, min } => {
            let b0 = e0 / 32;
            let nb = (e1 - e0) / 32;
            assert!(qs.len() >= (b0 + nb) * 16 && scale.len() >= b0 + nb && min.len() >= b0 + nb);
            let mask = _mm_set1_epi8(0x0F);
            for bi in 0..nb {
                let b = b0 + bi;
                // SAFETY: block b has 16 code bytes (asserted above).
                let raw = _mm_loadu_si128(qs.as_ptr().add(b * 16) as *const __m128i);
                let lo = _mm_and_si128(raw, mask);
                let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), mask);
                let s = _mm512_set1_ps(*scale.get_unchecked(b));
                let m = _mm512_set1_ps(*min.get_unchecked(b));
                let flo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo));
                let fhi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi));
                _mm512_storeu_ps(op.add(bi * 32), _mm512_fmadd_ps(flo, s, m));
                _mm512_storeu_ps(op.add(bi * 32 + 16), _mm512_fmadd_ps(fhi, s, m));
            }
        }
        Packed::I8 {
            block,
            qs,
            scale,
            min,
        } => {
            let block = *block;
            let b0 = e0 / block;
            let nb = (e1 - e0) / block;
            assert!(qs.len() >= (b0 + nb) * block && scale.len() >= b0 + nb);
            for bi in 0..nb {
                let b = b0 + bi;
                let s = _mm512_set1_ps(*scale.get_unchecked(b));
                let m = _mm512_set1_ps(min.as_ref().map_or(0.0, |mm| mm[b]));
                for h in 0..block / 16 {
                    // SAFETY: block b has `block` codes (asserted above).
                    let raw =
                        _mm_loadu_si128(qs.as_ptr().add(b * block + h * 16) as *const __m128i);
                    let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
                    _mm512_storeu_ps(op.add(bi * block + h * 16), _mm512_fmadd_ps(f, s, m));
                }
            }
        }
    }
}

/// Loads the 16 weights of k-chunk `c` (elements `16c..16c+16`) of a packed row as f32,
/// computed exactly as `dequant_rows` does.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn q4_chunk_pair(qs: *const u8, scale: f32, min: f32) -> (__m512, __m512) {
    let raw = _mm_loadu_si128(qs as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(raw, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), mask);
    let s = _mm512_set1_ps(scale);
    let m = _mm512_set1_ps(min);
    (
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), s, m),
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), s, m),
    )
}

/// Dot products of `M ≤ 4` activation rows with weight rows `r0..r1`, dequantizing each
/// block in registers instead of through a scratch panel. The arithmetic per output is
/// the same FMA chain as `tile`, so results are bitwise identical to the panel path.
///
/// # Safety
/// Requires avx512f; `w` must be Q4 or I8 packed with `cols % 32 == 0` (I8 blocks of 16
/// or 32), `x` holds `M` rows of `cols`, `y` has room for rows `< M` at stride `ldy`.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn fused_rows<const M: usize>(
    w: &PackedMatrix,
    r0: usize,
    r1: usize,
    x: &[f32],
    y: &mut [f32],
    ldy: usize,
) {
    let k = w.cols();
    assert!(x.len() >= M * k && k.is_multiple_of(32) && r1 <= w.rows());
    assert!(M == 0 || y.len() >= (M - 1) * ldy + r1);
    // One weight row at a time: measured faster than 2 or 4 rows in lockstep, whose
    // extra concurrent memory streams (codes, scales, mins per row) cost more than the
    // FMA latency they hide.
    for j in r0..r1 {
        fused_group::<M, 1>(w, j, x, y, ldy);
    }
}

#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
unsafe fn fused_group<const M: usize, const R: usize>(
    w: &PackedMatrix,
    j0: usize,
    x: &[f32],
    y: &mut [f32],
    ldy: usize,
) {
    let k = w.cols();
    let xp = x.as_ptr();
    let nb = k / 32;
    let mut acc = [[_mm512_setzero_ps(); R]; M];
    match &w.data {
        Packed::Q4 { qs, scale, min } => {
            let last = (j0 + R) * nb;
            assert!(qs.len() >= last * 16 && scale.len() >= last && min.len() >= last);
            for b in 0..nb {
                let mut wlo = [_mm512_setzero_ps(); R];
                let mut whi = [_mm512_setzero_ps(); R];
                for r in 0..R {
                    let blk = (j0 + r) * nb + b;
                    (wlo[r], whi[r]) = q4_chunk_pair(
                        qs.as_ptr().add(blk * 16),
                        *scale.get_unchecked(blk),
                        *min.get_unchecked(blk),
                    );
                }
                for i in 0..M {
                    let xl = _mm512_loadu_ps(xp.add(i * k + b * 32));
                    let xh = _mm512_loadu_ps(xp.add(i * k + b * 32 + 16));
                    for r in 0..R {
                        acc[i][r] = _mm512_fmadd_ps(xl, wlo[r], acc[i][r]);
                        acc[i][r] = _mm512_fmadd_ps(xh, whi[r], acc[i][r]);
                    }
                }
            }
        }
        Packed::I8 {
            block,
            qs,
            scale,
            min,
        } => {
            let block = *block;
            assert!(qs.len() >= (j0 + R) * k && scale.len() >= (j0 + R) * k / block);
            for c in 0..k / 16 {
                let mut wv = [_mm512_setzero_ps(); R];
                for r in 0..R {
                    let e = (j0 + r) * k + c * 16;
                    let b = e / block;
                    let s = _mm512_set1_ps(*scale.get_unchecked(b));
                    let m = _mm512_set1_ps(min.as_ref().map_or(0.0, |mm| mm[b]));
                    let raw = _mm_loadu_si128(qs.as_ptr().add(e) as *const __m128i);
                    wv[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw)), s, m);
                }
                for i in 0..M {
                    let xv = _mm512_loadu_ps(xp.add(i * k + c * 16));
                    for r in 0..R {
                        acc[i][r] = _mm512_fmadd_ps(xv, wv[r], acc[i][r]);
                    }
                }
            }
        }
        Packed::F32(_) => unreachable!("dense weights take the panel path"),
    }
    for i in 0..M {
        for r in 0..R {
            *y.get_unchecked_mut(i * ldy + j0 + r) = reduce16(acc[i][r]);
        }
    }
}
