//! Activation rows as 16-bit integers per block, the other operand of the integer path.
//!
//! Each block of `block` values gets a scale `s = amax / 32512` and codes
//! `c = round(x / s)`, so the rounding error is at most `amax / 65024` — 256 times finer
//! than the 8-bit blocks llama.cpp multiplies with, which is what its 0.13-nat error
//! against the exact model comes from. `c` is stored as two signed bytes,
//! `c = 256 * hi + lo`, because `vpdpbusd` multiplies unsigned by signed bytes: two of
//! them give the exact integer `Σ code * c`.

/// Largest code magnitude: `hi = (c + 128) >> 8` then stays within ±127 and `lo` within
/// -128..=127.
const CMAX: f32 = 32512.0;

/// Largest code magnitude of 8-bit activation blocks (llama.cpp's `q8` arithmetic).
const CMAX8: f32 = 127.0;

pub(crate) struct QuantActs {
    pub k: usize,
    pub block: usize,
    /// 16, or 8: codes within ±127 held in `lo` alone (`hi` is zero), which halves the
    /// kernels' multiplies at the cost of 256 times coarser activation codes.
    pub bits: u8,
    pub hi: Vec<i8>,
    pub lo: Vec<i8>,
    /// Per row and block: `s`.
    pub scale: Vec<f32>,
    /// Per row and block: `s * Σ c`, the block's sum as the integer product sees it.
    pub sum: Vec<f32>,
    /// Per row and block: the exact `Σ c`, for kernels that fold a code offset into the
    /// integer product (`scalar::codes_gemm` on `SuperI8`).
    pub csum: Vec<i32>,
    /// The codes `c` again as 16-bit integers, for the kernels that multiply words
    /// (`vpdpwssd`); filled only when `has_wide`.
    pub wide: Vec<i16>,
    pub has_wide: bool,
}

impl QuantActs {
    pub const fn new() -> Self {
        Self {
            k: 0,
            block: 0,
            bits: 16,
            hi: Vec::new(),
            lo: Vec::new(),
            scale: Vec::new(),
            sum: Vec::new(),
            csum: Vec::new(),
            wide: Vec::new(),
            has_wide: false,
        }
    }

    pub fn resize(&mut self, m: usize, k: usize, block: usize, bits: u8) {
        debug_assert!(k.is_multiple_of(block) && (bits == 8 || bits == 16));
        self.k = k;
        self.block = block;
        self.bits = bits;
        self.hi.resize(m * k, 0);
        self.lo.resize(m * k, 0);
        self.scale.resize(m * k / block, 0.0);
        self.sum.resize(m * k / block, 0.0);
        self.csum.resize(m * k / block, 0);
        self.has_wide = false;
    }

    /// Row `i`'s share of the buffers, for the quantizer to fill.
    pub fn row_mut(&mut self, i: usize) -> ActRow<'_> {
        let (k, nb) = (self.k, self.k / self.block);
        ActRow {
            hi: &mut self.hi[i * k..(i + 1) * k],
            lo: &mut self.lo[i * k..(i + 1) * k],
            scale: &mut self.scale[i * nb..(i + 1) * nb],
            sum: &mut self.sum[i * nb..(i + 1) * nb],
        }
    }

    /// The code `c` of row `i`, element `kk`.
    pub fn code(&self, i: usize, kk: usize) -> i32 {
        let at = i * self.k + kk;
        256 * self.hi[at] as i32 + self.lo[at] as i32
    }
}

/// One row's outputs: `hi` and `lo` hold `k` values, `scale` and `sum` `k / block`.
pub(crate) struct ActRow<'a> {
    pub hi: &'a mut [i8],
    pub lo: &'a mut [i8],
    pub scale: &'a mut [f32],
    pub sum: &'a mut [f32],
}

/// `out[b] = Σ c` over block `b` of one row's codes `256 * hi + lo`.
pub(crate) fn sum_codes(hi: &[i8], lo: &[i8], block: usize, out: &mut [i32]) {
    for ((h, l), o) in hi.chunks_exact(block).zip(lo.chunks_exact(block)).zip(out) {
        *o = h
            .iter()
            .zip(l)
            .map(|(&h, &l)| 256 * h as i32 + l as i32)
            .sum();
    }
}

/// Where code `kk` of row `i` lies in `wide`: rows in tiles of `WIDE_TILE`, and within a
/// tile, per pair of codes, the rows' pairs side by side, so one row tile's operands for a
/// pair lie in one 32-byte span.
pub(crate) const WIDE_TILE: usize = 6;

/// Elements of `wide` for `m` rows of `k`.
pub(crate) fn wide_len(m: usize, k: usize) -> usize {
    m.div_ceil(WIDE_TILE) * WIDE_TILE * k
}

/// Writes row `i`'s codes `256 * hi + lo` into `wide` (laid out as `WIDE_TILE` says).
///
/// # Safety
/// `wide` must hold `wide_len(i + 1, hi.len())` elements; other threads may write other
/// rows at the same time (every element belongs to one row).
pub(crate) unsafe fn widen_row(i: usize, hi: &[i8], lo: &[i8], wide: *mut i16) {
    let k = hi.len();
    let row = wide.add((i / WIDE_TILE) * WIDE_TILE * k + (i % WIDE_TILE) * 2);
    for (p, (h, l)) in hi.chunks_exact(2).zip(lo.chunks_exact(2)).enumerate() {
        let at = row.add(p * 2 * WIDE_TILE);
        *at = ((h[0] as i16) << 8) + l[0] as i16;
        *at.add(1) = ((h[1] as i16) << 8) + l[1] as i16;
    }
}

/// Quantizes one row of `k` values to `bits`-bit codes.
pub(crate) fn quantize_row(x: &[f32], block: usize, out: ActRow, bits: u8) {
    if bits == 8 {
        #[cfg(target_arch = "x86_64")]
        if crate::isa() != crate::Isa::Scalar {
            // SAFETY: avx2 and fma were detected (every ISA above scalar has them).
            return unsafe { quantize_row8_avx2(x, block, out) };
        }
        return quantize_row8_body(x, block, out);
    }
    #[cfg(target_arch = "x86_64")]
    match crate::isa() {
        // SAFETY: avx512f and avx512bw were detected; the body is the same IEEE arithmetic
        // either way.
        crate::Isa::Avx512 if avx512bw() => return unsafe { quantize_row_avx512(x, block, out) },
        crate::Isa::Avx512 => {}
        // SAFETY: avx2 and fma were detected.
        crate::Isa::Avx2 => return unsafe { quantize_row_avx2(x, block, out) },
        crate::Isa::Scalar => {}
    }
    quantize_row_body(x, block, out);
}

#[cfg(target_arch = "x86_64")]
fn avx512bw() -> bool {
    use std::sync::OnceLock;
    static BW: OnceLock<bool> = OnceLock::new();
    *BW.get_or_init(|| is_x86_feature_detected!("avx512bw"))
}

/// The scalar body compiled for AVX2, which the compiler vectorizes without changing a
/// result (no fast-math: every operation stays the IEEE one written).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row_avx2(x: &[f32], block: usize, out: ActRow) {
    quantize_row_body(x, block, out)
}

// Vectors are indexed by position within the block on purpose.
#[allow(clippy::needless_range_loop)]
/// The AVX-512 twin of `quantize_row_body`, block by block; blocks holding a NaN or an
/// infinity go through the scalar body, which defines what they become.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(x: &[f32], block: usize, out: ActRow) {
    use std::arch::x86_64::*;
    let ActRow { hi, lo, scale, sum } = out;
    assert!(block.is_multiple_of(16) && block <= 64);
    let nb = x.len() / block;
    assert!(
        hi.len() >= nb * block && lo.len() >= nb * block && scale.len() >= nb && sum.len() >= nb
    );
    let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
    let inf = _mm512_set1_ps(f32::INFINITY);
    for b in 0..nb {
        let xs = &x[b * block..(b + 1) * block];
        let nv = block / 16;
        let mut v = [_mm512_setzero_ps(); 4];
        let mut amax = _mm512_setzero_ps();
        let mut finite = true;
        for j in 0..nv {
            v[j] = _mm512_loadu_ps(xs.as_ptr().add(16 * j));
            let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v[j]), abs_mask));
            finite &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, inf) == 0xFFFF;
            amax = _mm512_max_ps(amax, a);
        }
        let amax = _mm512_reduce_max_ps(amax);
        // Subnormal maxima overflow `inv`; the scalar body defines that case too.
        if !finite || amax == 0.0 || !(CMAX / amax).is_finite() {
            let one = ActRow {
                hi: &mut hi[b * block..(b + 1) * block],
                lo: &mut lo[b * block..(b + 1) * block],
                scale: &mut scale[b..b + 1],
                sum: &mut sum[b..b + 1],
            };
            quantize_row_body(xs, block, one);
            continue;
        }
        let (s, inv) = (amax / CMAX, CMAX / amax);
        let (vinv, vmax) = (_mm512_set1_ps(inv), _mm512_set1_ps(CMAX));
        let mut total = _mm512_setzero_si512();
        let mut tops = [_mm512_setzero_si512(); 4];
        let mut lows = [_mm512_setzero_si512(); 4];
        for j in 0..nv {
            let scaled = _mm512_min_ps(
                _mm512_max_ps(
                    _mm512_mul_ps(v[j], vinv),
                    _mm512_sub_ps(_mm512_setzero_ps(), vmax),
                ),
                vmax,
            );
            // The default rounding mode, to nearest even, is `round_ties_even`.
            let c = _mm512_cvtps_epi32(scaled);
            tops[j] = _mm512_srai_epi32::<8>(_mm512_add_epi32(c, _mm512_set1_epi32(128)));
            lows[j] = _mm512_sub_epi32(c, _mm512_slli_epi32::<8>(tops[j]));
            total = _mm512_add_epi32(total, c);
        }
        // Narrow to bytes with packs and one permute: `vpmovdb` to memory, what the
        // compiler makes of a truncating store, is slow on Zen 4 (it was 9% of a prefill).
        // The packs interleave 4-value groups per 128-bit lane: dword 4L+0..3 of the result
        // holds group L of tops[j], tops[j+1], lows[j], lows[j+1]; the permute gathers the
        // tops into the low 32 bytes and the lows into the high 32. Every value is in byte
        // range, so the saturating packs change nothing.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        for j in (0..nv).step_by(2) {
            let (t1, l1) = if j + 1 < nv {
                (tops[j + 1], lows[j + 1])
            } else {
                (_mm512_setzero_si512(), _mm512_setzero_si512())
            };
            let packed = _mm512_packs_epi16(
                _mm512_packs_epi32(tops[j], t1),
                _mm512_packs_epi32(lows[j], l1),
            );
            let bytes = _mm512_permutexvar_epi32(order, packed);
            let (h, l) = (
                hi.as_mut_ptr().add(b * block + 16 * j),
                lo.as_mut_ptr().add(b * block + 16 * j),
            );
            if j + 1 < nv {
                _mm256_storeu_si256(h as *mut _, _mm512_castsi512_si256(bytes));
                _mm256_storeu_si256(l as *mut _, _mm512_extracti64x4_epi64::<1>(bytes));
            } else {
                _mm_storeu_si128(h as *mut _, _mm512_castsi512_si128(bytes));
                _mm_storeu_si128(l as *mut _, _mm512_extracti32x4_epi32::<2>(bytes));
            }
        }
        scale[b] = s;
        sum[b] = s * _mm512_reduce_add_epi32(total) as f32;
    }
}

/// The 8-bit body compiled for AVX2 (the same IEEE arithmetic, vectorized).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row8_avx2(x: &[f32], block: usize, out: ActRow) {
    quantize_row8_body(x, block, out)
}

/// 8-bit codes `c = round(x / s)`, `s = amax / 127`, in `lo`; `hi` zero.
#[inline(always)]
fn quantize_row8_body(x: &[f32], block: usize, out: ActRow) {
    let ActRow { hi, lo, scale, sum } = out;
    hi.fill(0);
    let chunks = x
        .chunks_exact(block)
        .zip(lo.chunks_exact_mut(block))
        .zip(scale.iter_mut().zip(sum.iter_mut()));
    for ((xs, ls), (s_out, sum_out)) in chunks {
        let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let (s, inv) = if amax > 0.0 && amax.is_finite() && (CMAX8 / amax).is_finite() {
            (amax / CMAX8, CMAX8 / amax)
        } else {
            (if amax == 0.0 { 0.0 } else { f32::NAN }, 0.0)
        };
        let mut total = 0i32;
        for (&v, l) in xs.iter().zip(ls.iter_mut()) {
            let c = (v * inv).round_ties_even().clamp(-CMAX8, CMAX8) as i32;
            *l = c as i8;
            total += c;
        }
        *s_out = s;
        *sum_out = s * total as f32;
    }
}

#[inline(always)]
fn quantize_row_body(x: &[f32], block: usize, out: ActRow) {
    let ActRow { hi, lo, scale, sum } = out;
    let chunks = x
        .chunks_exact(block)
        .zip(hi.chunks_exact_mut(block))
        .zip(lo.chunks_exact_mut(block))
        .zip(scale.iter_mut().zip(sum.iter_mut()));
    for (((xs, hs), ls), (s_out, sum_out)) in chunks {
        let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
        // A zero (or non-finite) block gets zero codes; its scale still carries NaN/inf
        // into the output the way the f32 product would.
        let (s, inv) = if amax > 0.0 && amax.is_finite() {
            (amax / CMAX, CMAX / amax)
        } else {
            (if amax == 0.0 { 0.0 } else { f32::NAN }, 0.0)
        };
        let mut total = 0i32;
        for ((&v, h), l) in xs.iter().zip(hs.iter_mut()).zip(ls.iter_mut()) {
            let c = (v * inv).round_ties_even().clamp(-CMAX, CMAX) as i32;
            let top = (c + 128) >> 8;
            *h = top as i8;
            *l = (c - (top << 8)) as i8;
            total += c;
        }
        *s_out = s;
        *sum_out = s * total as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simd_quantizer_is_bitwise_scalar(
            seed in 0u64..10_000,
            blocks in 1usize..5,
            block in prop::sample::select(vec![16usize, 32, 48, 64]),
            spread in prop::sample::select(vec![1e-42f32, 1e-30, 1e-3, 1.0, 3e4, 1e38]),
            special in 0usize..6,
        ) {
            if crate::isa() != crate::Isa::Avx512 {
                return Ok(());
            }
            let k = blocks * block;
            let mut x: Vec<f32> = (0..k)
                .map(|i| ((((i as u64 + 1) * 2654435761 + seed * 97) % 20001) as f32 - 10000.0) / 10000.0 * spread)
                .collect();
            // Exact ties, zero blocks, and non-finite values.
            match special {
                0 => x[seed as usize % k] = f32::NAN,
                1 => x[seed as usize % k] = f32::NEG_INFINITY,
                2 => x[..block].fill(0.0),
                3 => { x[0] = 1.0; x[1] = 0.5 / 32512.0 * 3.0; }
                _ => {}
            }
            let (mut a, mut b) = (QuantActs::new(), QuantActs::new());
            a.resize(1, k, block, 16);
            b.resize(1, k, block, 16);
            quantize_row(&x, block, a.row_mut(0), 16);
            quantize_row_body(&x, block, b.row_mut(0));
            prop_assert_eq!(&a.hi, &b.hi);
            prop_assert_eq!(&a.lo, &b.lo);
            prop_assert_eq!(a.scale.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.scale.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(a.sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn codes_reconstruct_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
            .collect();
        let mut q = QuantActs::new();
        q.resize(1, 96, 32, 16);
        quantize_row(&x, 32, q.row_mut(0), 16);
        for (kk, &v) in x.iter().enumerate() {
            let s = q.scale[kk / 32];
            let back = s * q.code(0, kk) as f32;
            assert!((back - v).abs() <= 0.5001 * s, "{kk}: {back} vs {v}");
        }
        let sum: i32 = (0..32).map(|kk| q.code(0, kk)).sum();
        assert_eq!(q.sum[0], q.scale[0] * sum as f32);
    }

    #[test]
    fn eight_bit_codes_reconstruct_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
            .collect();
        let mut q = QuantActs::new();
        q.resize(1, 96, 32, 8);
        quantize_row(&x, 32, q.row_mut(0), 8);
        assert!(q.hi.iter().all(|&h| h == 0));
        for (kk, &v) in x.iter().enumerate() {
            let s = q.scale[kk / 32];
            let c = q.code(0, kk);
            assert!(
                c.abs() <= 127 && (s * c as f32 - v).abs() <= 0.5001 * s,
                "{kk}"
            );
        }
        assert_eq!(
            q.scale[0],
            x[..32].iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0
        );
    }

    #[test]
    fn extreme_codes_split_into_bytes_exactly() {
        let mut x = vec![0f32; 32];
        x[0] = 1.0;
        x[1] = -1.0;
        x[2] = 0.99998;
        let mut q = QuantActs::new();
        q.resize(1, 32, 32, 16);
        quantize_row(&x, 32, q.row_mut(0), 16);
        assert_eq!(q.code(0, 0), 32512);
        assert_eq!(q.code(0, 1), -32512);
        assert_eq!(q.code(0, 2), (0.99998f32 * CMAX).round_ties_even() as i32);
        assert_eq!(q.code(0, 3), 0);
    }
}
