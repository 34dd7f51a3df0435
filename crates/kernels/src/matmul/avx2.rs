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
    use super::pack::{CodeBits as C, ScaleBits as S};
    let wide = w.codes == C::Bytes && w.max_code > 127;
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
                let a8 = acts.bits == 8;
                macro_rules! by_rows {
                    ($cb:expr, $sb:expr) => {
                        match (rows, a8) {
                            (2, false) => t.run::<2, { $cb }, { $sb }, false>(y),
                            (2, true) => t.run::<2, { $cb }, { $sb }, true>(y),
                            (_, false) => t.run::<1, { $cb }, { $sb }, false>(y),
                            (_, true) => t.run::<1, { $cb }, { $sb }, true>(y),
                        }
                    };
                }
                match (w.codes, w.scales, wide) {
                    (C::Nib4, S::ScaleOffset(_), _) => by_rows!(NIB4, OFFSET),
                    (C::Nib4, S::ScaleMin, _) => by_rows!(NIB4, MIN),
                    (C::Nib4, S::Super6, _) => by_rows!(NIB4, SUPER6),
                    (C::Nib4Hi1, S::Super6, _) => by_rows!(HI1, SUPER6),
                    (C::Nib4Hi2, S::SuperI8, _) => by_rows!(HI2, SUPER_I8),
                    (C::Bytes, S::ScaleOffset(_), false) => by_rows!(BYTES, OFFSET),
                    (C::Bytes, S::ScaleOffset(_), true) => by_rows!(WIDE_BYTES, OFFSET),
                    (cb, sb, _) => unreachable!("no kernel for {cb:?} codes with {sb:?} scales"),
                }
            }
            i0 += rows;
        }
    }
}

const NIB4: u8 = 0;
const HI1: u8 = 1;
const HI2: u8 = 2;
const BYTES: u8 = 3;
/// Byte codes above 127, split into nibbles for `vpmaddubsw`.
const WIDE_BYTES: u8 = 4;
const MIN: u8 = 0;
const OFFSET: u8 = 1;
const SUPER6: u8 = 2;
const SUPER_I8: u8 = 3;

/// Bits `bits` of `high` moved to `shift` bits lower (or higher, if negative) then masked
/// with `mask` and or-ed into `nib`: each byte's result bits come from the same byte.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn or_high(nib: __m256i, high: __m256i, left: i32, mask: i8) -> __m256i {
    let moved = if left >= 0 {
        _mm256_sll_epi16(high, _mm_cvtsi32_si128(left))
    } else {
        _mm256_srl_epi16(high, _mm_cvtsi32_si128(-left))
    };
    _mm256_or_si256(nib, _mm256_and_si256(moved, _mm256_set1_epi8(mask)))
}

/// Eight lanes' 6-bit sub-block values `j` of a `Super6` header (see `x86::six_bits`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn six_bits(lo: *const u8, hi: *const u8, j: usize, shift: i32) -> __m256 {
    let at = 16 * (j / 2);
    let odd = (j % 2) as i32;
    let l = _mm_loadl_epi64(lo.add(at) as *const _);
    let h = _mm_loadl_epi64(hi.add(at) as *const _);
    let l = _mm_and_si128(
        _mm_srl_epi16(l, _mm_cvtsi32_si128(4 * odd)),
        _mm_set1_epi8(0xF),
    );
    let h = _mm_and_si128(
        _mm_srl_epi16(h, _mm_cvtsi32_si128(shift + 2 * odd)),
        _mm_set1_epi8(3),
    );
    let v = _mm_or_si128(l, _mm_slli_epi16::<4>(h));
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
}

/// Eight lanes' scale and min of block `j`, lanes from `8 * half`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_scales<const SB: u8>(
    hdr: *const u8,
    j: usize,
    half: usize,
    offset: f32,
) -> (__m256, __m256) {
    let f16s = |at: usize| _mm256_cvtph_ps(_mm_loadu_si128(hdr.add(at + 16 * half) as *const _));
    match SB {
        MIN => (f16s(0), f16s(32)),
        OFFSET => {
            let d = f16s(0);
            (d, _mm256_mul_ps(d, _mm256_set1_ps(offset)))
        }
        SUPER6 => {
            let (lo, hi) = (hdr.add(64 + 8 * half), hdr.add(192 + 8 * half));
            let sc = six_bits(lo, hi, j, 0);
            let m = six_bits(lo.add(64), hi, j, 4);
            let neg = _mm256_set1_ps(-0.0);
            (
                _mm256_mul_ps(f16s(0), sc),
                _mm256_mul_ps(f16s(32), _mm256_xor_ps(m, neg)),
            )
        }
        _ => unreachable!("SuperI8 scales are applied in the products"),
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
    unsafe fn run<const RR: usize, const CB: u8, const SB: u8, const A8: bool>(
        &self,
        y: &SharedOut,
    ) {
        let (w, k, acts) = (self.w, self.k, self.acts);
        let (block, nb) = (w.block, k / w.block);
        let xh = acts.hi.as_ptr().add(self.i0 * k);
        let xl = acts.lo.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
        let nibble = _mm256_set1_epi8(0x0F);
        let offset = match w.scales {
            super::pack::ScaleBits::ScaleOffset(o) => -(o as f32),
            _ => -32.0,
        };
        let high_at = w.high_bits_at() + 32 * self.half;
        let mut acc = [_mm256_setzero_ps(); RR];
        // `SuperI8`'s sums over the blocks of the current super-block.
        let mut part = [_mm256_setzero_ps(); RR];
        // As in the AVX-512 kernel: keep the panel's next bytes requested.
        let mut fetched = w.block_at(self.p, nb, 0).hdr;
        let data_end = w.data.len();
        for b in 0..nb {
            let at = w.block_at(self.p, nb, b);
            let want = (at.codes + w.code_bytes() + super::PREFETCH_AHEAD).min(data_end);
            while fetched < want {
                _mm_prefetch::<_MM_HINT_T0>(w.data.as_ptr().add(fetched) as *const i8);
                fetched += 64;
            }
            let base = w.data.as_ptr().add(at.codes + 32 * self.half);
            let mut ia = [_mm256_setzero_si256(); RR];
            let mut ib = [_mm256_setzero_si256(); RR];
            let kb = b * block;
            if CB == BYTES || CB == WIDE_BYTES {
                for g in 0..block / 4 {
                    let raw = _mm256_loadu_si256(base.add(g * 64) as *const _);
                    for r in 0..RR {
                        let at = r * k + kb + 4 * g;
                        let (h, l) = (bcast(xh.add(at)), bcast(xl.add(at)));
                        if CB == WIDE_BYTES {
                            let lo = _mm256_and_si256(raw, nibble);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                            let split = |a: __m256i| {
                                _mm256_add_epi32(_mm256_slli_epi32::<4>(dot4(hi, a)), dot4(lo, a))
                            };
                            ib[r] = _mm256_add_epi32(ib[r], split(l));
                            if !A8 {
                                ia[r] = _mm256_add_epi32(ia[r], split(h));
                            }
                        } else {
                            ib[r] = _mm256_add_epi32(ib[r], dot4(raw, l));
                            if !A8 {
                                ia[r] = _mm256_add_epi32(ia[r], dot4(raw, h));
                            }
                        }
                    }
                }
            } else {
                let high = if CB == NIB4 {
                    _mm256_setzero_si256()
                } else {
                    _mm256_loadu_si256(w.data.as_ptr().add(at.codes + high_at) as *const _)
                };
                for g in 0..block / 8 {
                    let raw = _mm256_loadu_si256(base.add(g * 64) as *const _);
                    let mut c0 = _mm256_and_si256(raw, nibble);
                    let mut c1 = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble);
                    let (v0, v1) = (2 * g as i32, 2 * g as i32 + 1);
                    if CB == HI1 {
                        c0 = or_high(c0, high, 4 - v0, 0x10);
                        c1 = or_high(c1, high, 4 - v1, 0x10);
                    } else if CB == HI2 {
                        c0 = or_high(c0, high, 4 - 2 * v0, 0x30);
                        c1 = or_high(c1, high, 4 - 2 * v1, 0x30);
                    }
                    for r in 0..RR {
                        let at = r * k + kb + 8 * g;
                        ib[r] = _mm256_add_epi32(ib[r], dot4(c0, bcast(xl.add(at))));
                        ib[r] = _mm256_add_epi32(ib[r], dot4(c1, bcast(xl.add(at + 4))));
                        if !A8 {
                            ia[r] = _mm256_add_epi32(ia[r], dot4(c0, bcast(xh.add(at))));
                            ia[r] = _mm256_add_epi32(ia[r], dot4(c1, bcast(xh.add(at + 4))));
                        }
                    }
                }
            }
            if SB == SUPER_I8 {
                // `scalar::codes_gemm`'s folded form, `J = (I - 32 Σ c) * sc` as the AVX-512
                // byte kernel computes it (`Tile::fold_super_i8`: exact up to one rounding).
                let hdr = w.data.as_ptr().add(at.hdr);
                let sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    hdr.add(32 + 16 * at.j + 8 * self.half) as *const _,
                )));
                for r in 0..RR {
                    let i = (self.i0 + r) * nb + b;
                    let s = _mm256_set1_ps(*acts.scale.get_unchecked(i));
                    let offset = _mm256_set1_epi32(32 * *acts.csum.get_unchecked(i));
                    let dot = _mm256_add_epi32(_mm256_slli_epi32::<8>(ia[r]), ib[r]);
                    let j = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot, offset)), sc);
                    part[r] = _mm256_fmadd_ps(j, s, part[r]);
                }
                if at.j + 1 == w.scales.blocks_per_group() {
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(hdr.add(16 * self.half) as *const _));
                    for r in 0..RR {
                        acc[r] = _mm256_fmadd_ps(part[r], d, acc[r]);
                        part[r] = _mm256_setzero_ps();
                    }
                }
                continue;
            }
            let (d, mn) = block_scales::<SB>(w.data.as_ptr().add(at.hdr), at.j, self.half, offset);
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
