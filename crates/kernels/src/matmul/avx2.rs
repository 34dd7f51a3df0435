//! AVX2 twin of the integer matmul, for CPUs without AVX-512 VNNI: `vpmaddubsw` then
//! `vpmaddwd` stand in for `vpdpbusd`. `vpmaddubsw` saturates its 16-bit pair sums, so
//! it is exact only while `2 * code * 128 < 32768`, i.e. codes up to 127; wider codes
//! (Q8_0, offset to 0..=255) are split into nibbles, `code = 16 * high + low`.
// Register tiles are indexed [row] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::acts::QuantActs;
use super::pack::{CodePanels, PANEL};
use super::shared_out::SharedOut;
use std::arch::x86_64::*;

/// Rows per tile: AVX2 has 16 vector registers, and a row holds three per half panel.
const R: usize = 2;

/// Panels `p0..p1` times all `m` rows of `acts`.
///
/// # Safety
/// Requires avx2, fma and f16c; shapes as in `x86::codes_panels`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn codes_panels(
    w: &CodePanels,
    k: usize,
    n: usize,
    p0: usize,
    p1: usize,
    acts: &QuantActs,
    m: usize,
    y: &SharedOut,
) {
    w.check_job(k, n, p1, acts, m, y.len());
    let wide = !w.nibbles && w.max_code > 127;
    for p in p0..p1 {
        let mut i0 = 0;
        while i0 < m {
            let rows = (m - i0).min(R);
            for half in 0..2 {
                let t = HalfTile {
                    w,
                    k,
                    n,
                    acts,
                    i0,
                    p,
                    half,
                };
                match (rows, w.nibbles, wide, w.half_scales) {
                    (2, true, _, true) => t.run::<2, true, false, true>(y),
                    (2, true, _, false) => t.run::<2, true, false, false>(y),
                    (2, false, false, true) => t.run::<2, false, false, true>(y),
                    (2, false, false, false) => t.run::<2, false, false, false>(y),
                    (2, false, true, true) => t.run::<2, false, true, true>(y),
                    (2, false, true, false) => t.run::<2, false, true, false>(y),
                    (_, true, _, true) => t.run::<1, true, false, true>(y),
                    (_, true, _, false) => t.run::<1, true, false, false>(y),
                    (_, false, false, true) => t.run::<1, false, false, true>(y),
                    (_, false, false, false) => t.run::<1, false, false, false>(y),
                    (_, false, true, true) => t.run::<1, false, true, true>(y),
                    (_, false, true, false) => t.run::<1, false, true, false>(y),
                }
            }
            i0 += rows;
        }
    }
}

/// Rows `i0..` against one half (eight rows) of panel `p`.
struct HalfTile<'a> {
    w: &'a CodePanels,
    k: usize,
    n: usize,
    acts: &'a QuantActs,
    i0: usize,
    p: usize,
    half: usize,
}

/// `Σ code * a` over each 32-bit lane's four byte pairs, exactly (codes ≤ 127).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot4(codes: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(codes, a), _mm256_set1_epi16(1))
}

impl HalfTile<'_> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run<const RR: usize, const NIB: bool, const WIDE: bool, const HALF: bool>(
        &self,
        y: &SharedOut,
    ) {
        let (w, k, acts) = (self.w, self.k, self.acts);
        let (block, nb) = (w.block, k / w.block);
        let xh = acts.hi.as_ptr().add(self.i0 * k);
        let xl = acts.lo.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
        let nibble = _mm256_set1_epi8(0x0F);
        let codes_at = w.scale_bytes() + 32 * self.half;
        let mut acc = [_mm256_setzero_ps(); RR];
        for b in 0..nb {
            let base = w.data.as_ptr().add(w.block_at(self.p, nb, b));
            let mut ia = [_mm256_setzero_si256(); RR];
            let mut ib = [_mm256_setzero_si256(); RR];
            let kb = b * block;
            if NIB {
                for g in 0..4 {
                    let raw = _mm256_loadu_si256(base.add(codes_at + g * 64) as *const _);
                    let c0 = _mm256_and_si256(raw, nibble);
                    let c1 = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                    for r in 0..RR {
                        let at = r * k + kb + 8 * g;
                        ia[r] = _mm256_add_epi32(ia[r], dot4(c0, bcast(xh.add(at))));
                        ia[r] = _mm256_add_epi32(ia[r], dot4(c1, bcast(xh.add(at + 4))));
                        ib[r] = _mm256_add_epi32(ib[r], dot4(c0, bcast(xl.add(at))));
                        ib[r] = _mm256_add_epi32(ib[r], dot4(c1, bcast(xl.add(at + 4))));
                    }
                }
            } else {
                for g in 0..block / 4 {
                    let raw = _mm256_loadu_si256(base.add(codes_at + g * 64) as *const _);
                    for r in 0..RR {
                        let at = r * k + kb + 4 * g;
                        let (h, l) = (bcast(xh.add(at)), bcast(xl.add(at)));
                        if WIDE {
                            let lo = _mm256_and_si256(raw, nibble);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                            let split = |a: __m256i| {
                                _mm256_add_epi32(_mm256_slli_epi32::<4>(dot4(hi, a)), dot4(lo, a))
                            };
                            ia[r] = _mm256_add_epi32(ia[r], split(h));
                            ib[r] = _mm256_add_epi32(ib[r], split(l));
                        } else {
                            ia[r] = _mm256_add_epi32(ia[r], dot4(raw, h));
                            ib[r] = _mm256_add_epi32(ib[r], dot4(raw, l));
                        }
                    }
                }
            }
            let (d, mn) = if HALF {
                let at = base.add(16 * self.half);
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(at as *const _)),
                    _mm256_cvtph_ps(_mm_loadu_si128(at.add(32) as *const _)),
                )
            } else {
                let at = base.add(32 * self.half) as *const f32;
                (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(16)))
            };
            for r in 0..RR {
                let at = (self.i0 + r) * nb + b;
                let s = _mm256_set1_ps(*acts.scale.get_unchecked(at));
                let sum = _mm256_set1_ps(*acts.sum.get_unchecked(at));
                let dot = _mm256_add_epi32(_mm256_slli_epi32::<8>(ia[r]), ib[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, s), acc[r]);
                acc[r] = _mm256_fmadd_ps(mn, sum, acc[r]);
            }
        }
        let col = self.p * PANEL + 8 * self.half;
        if col >= self.n {
            return;
        }
        let valid = (self.n - col).min(8);
        for r in 0..RR {
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), acc[r]);
            let row = (self.i0 + r) * self.n + col;
            // SAFETY: (row, col..col + valid) are this task's own columns.
            y.copy_from_unshared(row, &out[..valid]);
        }
    }
}
