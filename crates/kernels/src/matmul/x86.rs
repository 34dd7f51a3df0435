//! AVX-512 kernels, bitwise twins of `scalar.rs`.
// Register tiles are indexed [row][panel] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::acts::{wide_len, QuantActs};
use super::pack::{CodePanels, PANEL};
use super::shared_out::SharedOut;
use super::MR;
use std::arch::x86_64::*;
use std::cell::RefCell;

mod words;

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_cols(y: *mut f32, v: __m512, valid: usize) {
    if valid >= PANEL {
        _mm512_storeu_ps(y, v);
    } else {
        _mm512_mask_storeu_ps(y, ((1u32 << valid) - 1) as u16, v);
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
    y: &SharedOut,
    ldy: usize,
    col0: usize,
    n: usize,
) {
    assert!(rows <= MR && x.len() >= rows * k && panels.iter().all(|p| p.len() >= k * PANEL));
    assert!(col0 + PANEL * (panels.len() - 1) < n && y.len() >= (rows - 1) * ldy + n);
    let xp = x.as_ptr();
    let valid = |q: usize| (n - col0 - q * PANEL).min(PANEL);
    let y0 = y.as_ptr();
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

/// Integer codes: panels `p0..p1` times all `m` activation rows, in row tiles of up to
/// eight. Small tiles take several panels at once so there are enough independent
/// `vpdpbusd` chains to cover its latency.
///
/// # Safety
/// Requires avx512f, avx512bw and avx512vnni; `acts` holds `m` rows of `k` quantized with
/// `w.block`; `y` holds `m` rows of `n`; `p1` is at most the panel count.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
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
    DECODED.with(|cell| {
        let mut decoded = cell.borrow_mut();
        let nb = k / w.block;
        // With one row tile each block's scales are decoded once anyway; with more, every
        // tile would decode them again. Only the 6-bit sub-block scales of Q4_K and Q5_K
        // cost enough to decode (some 25 instructions a block) to be worth 128 bytes a
        // block of extra cache traffic; the others are one or two conversions.
        // With 16-bit codes and several row tiles, the weights' codes are widened to words
        // once per task and multiplied with `vpdpwssd`: one instruction per 32
        // multiply-adds either way, but no per-tile unpacking of the codes and no shift
        // and add to combine the activations' two bytes.
        let wide = acts.has_wide;
        // The word tiles read `acts.wide` unchecked, a row tile at a time.
        assert!(!wide || acts.wide.len() >= wide_len(m, k));
        let predecode = wide || m > 8 && w.scales == super::pack::ScaleBits::Super6;
        // Panels decoded at a time: what fits DECODED_BYTES (WIDE_BYTES for words; at
        // least one), so the decoded panels do not push the activations out of cache.
        let chunk = if wide {
            words::chunk_panels(k)
        } else if predecode {
            (DECODED_BYTES / (nb * std::mem::size_of::<BlockScales>()).max(1)).max(1)
        } else {
            p1 - p0
        };
        let mut c0 = p0;
        while c0 < p1 {
            let c1 = (c0 + chunk).min(p1);
            if wide {
                words::chunk(w, k, n, acts, m, y, c0, c1, &mut decoded);
                c0 = c1;
                continue;
            }
            // Decoding in the first row tile as it met each group (instead of this pass,
            // which waits on the headers) measured 3% slower at batch 16 on the 1B shape.
            let scales = if predecode {
                decode_scales(w, nb, c0, c1, &mut decoded);
                Some(decoded.as_ptr())
            } else {
                None
            };
            let mut i0 = 0;
            while i0 < m {
                let r = (m - i0).min(8);
                let t = Tile {
                    w,
                    k,
                    n,
                    acts,
                    i0,
                    y: y.as_ptr(),
                    scales,
                    p_first: c0,
                };
                match r {
                    8 => t.panels::<8, 1>(c0, c1),
                    7 => t.panels::<7, 1>(c0, c1),
                    6 => t.panels::<6, 1>(c0, c1),
                    5 => t.panels::<5, 1>(c0, c1),
                    4 => t.panels::<4, 1>(c0, c1),
                    3 => t.panels::<3, 2>(c0, c1),
                    2 => t.panels::<2, 2>(c0, c1),
                    _ => t.panels::<1, 4>(c0, c1),
                }
                i0 += r;
            }
            c0 = c1;
        }
    });
}

/// The most bytes of decoded scales a task keeps at once (measured on the 1B shape's
/// layers: 32 KiB keeps k = 2048 rows at four panels a chunk, and k = 8192 at one).
const DECODED_BYTES: usize = 32 << 10;

/// One block's 16 scales and 16 mins as `block_scales` returns them, a cache line each.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct BlockScales {
    d: [f32; PANEL],
    min: [f32; PANEL],
}

thread_local! {
    /// The scales of the panels a task multiplies, decoded once for all its row tiles.
    static DECODED: RefCell<Vec<BlockScales>> = const { RefCell::new(Vec::new()) };
}

/// The scale offset `block_scales` takes for `w` (the AVX2 kernels' too).
pub(super) fn scale_offset(w: &CodePanels) -> f32 {
    match w.scales {
        super::pack::ScaleBits::ScaleOffset(o) => -(o as f32),
        _ => -32.0,
    }
}

/// Fills `out` with the scales of blocks `0..nb` of panels `p0..p1`, panel by panel.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn decode_scales(
    w: &CodePanels,
    nb: usize,
    p0: usize,
    p1: usize,
    out: &mut Vec<BlockScales>,
) {
    use super::pack::ScaleBits as S;
    match w.scales {
        S::ScaleMin => decode_scales_as::<MIN>(w, nb, p0, p1, out),
        S::ScaleOffset(_) => decode_scales_as::<OFFSET>(w, nb, p0, p1, out),
        S::Super6 => decode_scales_as::<SUPER6>(w, nb, p0, p1, out),
        S::SuperI8 => unreachable!("SuperI8 scales are applied in the products"),
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn decode_scales_as<const SB: u8>(
    w: &CodePanels,
    nb: usize,
    p0: usize,
    p1: usize,
    out: &mut Vec<BlockScales>,
) {
    reserve_scales(out, (p1 - p0) * nb);
    let offset = scale_offset(w);
    // This pass is the first to touch a chunk's weights: without asking for the headers
    // ahead, half its time went to waiting for each group's first line from memory.
    let (group, hdr_bytes) = (w.group_bytes(), w.scales.header_bytes());
    let bpg = w.scales.blocks_per_group();
    let ahead = HEADER_GROUPS_AHEAD * group;
    let data = w.data.as_ptr();
    for p in p0..p1 {
        for g in 0..nb / bpg {
            let hdr = w.block_at(p, nb, g * bpg).hdr;
            if hdr + ahead + hdr_bytes <= w.data.len() {
                for line in (0..hdr_bytes).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(data.add(hdr + ahead + line) as *const i8);
                }
            }
            group_scales::<SB>(
                data.add(hdr),
                offset,
                out.as_mut_ptr().add((p - p0) * nb + g * bpg),
            );
        }
    }
}

/// Grows `out` to `needed` entries; what is there is overwritten before it is read, so
/// the buffer is never refilled.
fn reserve_scales(out: &mut Vec<BlockScales>, needed: usize) {
    let zero = BlockScales {
        d: [0.0; PANEL],
        min: [0.0; PANEL],
    };
    if out.len() < needed {
        out.resize(needed, zero);
    }
}

/// The scales of every block of the group whose header is at `hdr` into `out`, one
/// entry per block, as `block_scales` gives them.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn group_scales<const SB: u8>(hdr: *const u8, offset: f32, out: *mut BlockScales) {
    match SB {
        SUPER6 => group_scales_super6(hdr, out),
        _ => {
            let (d, min) = block_scales::<SB>(hdr, 0, offset);
            _mm512_store_ps((*out).d.as_mut_ptr(), d);
            _mm512_store_ps((*out).min.as_mut_ptr(), min);
        }
    }
}

/// The eight blocks' scales of a `Super6` group at `hdr` into `out[0..8]`, the values
/// `block_scales::<SUPER6>` gives block by block (the same products), with the 6-bit
/// fields of all eight unpacked together: a block at a time took some 25 instructions,
/// 6.5% of batch-16 decode samples on the 1B shape.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn group_scales_super6(hdr: *const u8, out: *mut BlockScales) {
    let d = _mm512_cvtph_ps(_mm256_loadu_si256(hdr as *const _));
    let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(hdr.add(32) as *const _));
    // Byte 16t + r of each plane holds lane r's fields of blocks 2t (low nibble, high
    // bits 0-1 for the scale, 4-5 for the min) and 2t + 1 (high nibble, bits 2-3, 6-7).
    let sc_lo = _mm512_loadu_si512(hdr.add(64) as *const _);
    let m_lo = _mm512_loadu_si512(hdr.add(128) as *const _);
    let high = _mm512_loadu_si512(hdr.add(192) as *const _);
    let (nib, two) = (_mm512_set1_epi8(0xF), _mm512_set1_epi8(3));
    let field = |lo: __m512i, lo_shift: u32, hi_shift: u32| {
        let l = _mm512_and_si512(
            _mm512_srl_epi16(lo, _mm_cvtsi32_si128(lo_shift as i32)),
            nib,
        );
        let h = _mm512_and_si512(
            _mm512_srl_epi16(high, _mm_cvtsi32_si128(hi_shift as i32)),
            two,
        );
        _mm512_or_si512(l, _mm512_slli_epi16::<4>(h))
    };
    let sc = [field(sc_lo, 0, 0), field(sc_lo, 4, 2)];
    let m = [field(m_lo, 0, 4), field(m_lo, 4, 6)];
    let mut sc_bytes = [[0u8; 64]; 2];
    let mut m_bytes = [[0u8; 64]; 2];
    for odd in 0..2 {
        _mm512_storeu_si512(sc_bytes[odd].as_mut_ptr() as *mut _, sc[odd]);
        _mm512_storeu_si512(m_bytes[odd].as_mut_ptr() as *mut _, m[odd]);
    }
    let lanes = |bytes: &[u8; 64], t: usize| {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
            bytes.as_ptr().add(16 * t) as *const _,
        )))
    };
    for j in 0..8 {
        let (t, odd) = (j / 2, j % 2);
        let scale = lanes(&sc_bytes[odd], t);
        let min = lanes(&m_bytes[odd], t);
        let o = &mut *out.add(j);
        _mm512_store_ps(o.d.as_mut_ptr(), _mm512_mul_ps(d, scale));
        _mm512_store_ps(o.min.as_mut_ptr(), _mm512_mul_ps(dmin, negate(min)));
    }
}

/// `-v` by flipping the sign bit (an integer op: the float xor needs avx512dq).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn negate(v: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_xor_si512(
        _mm512_castps_si512(v),
        _mm512_set1_epi32(i32::MIN),
    ))
}

/// How many groups ahead `decode_scales` asks for headers (a Q4_K group is 2.3 KiB
/// for 16 rows).
const HEADER_GROUPS_AHEAD: usize = 4;

const NIB4: u8 = 0;
const HI1: u8 = 1;
const HI2: u8 = 2;
const BYTES: u8 = 3;
const MIN: u8 = 0;
const OFFSET: u8 = 1;
const SUPER6: u8 = 2;
const SUPER_I8: u8 = 3;

/// `nib | ((high >> v) & 1) << 4` per byte: moves bit `v` of `high` to bit 4. 16-bit
/// shifts are safe because each byte's bit 4 comes from the same byte.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn or_bit4(nib: __m512i, high: __m512i, v: usize) -> __m512i {
    let moved = match v {
        0 => _mm512_slli_epi16::<4>(high),
        1 => _mm512_slli_epi16::<3>(high),
        2 => _mm512_slli_epi16::<2>(high),
        3 => _mm512_slli_epi16::<1>(high),
        4 => high,
        5 => _mm512_srli_epi16::<1>(high),
        6 => _mm512_srli_epi16::<2>(high),
        _ => _mm512_srli_epi16::<3>(high),
    };
    // A | (B & C)
    _mm512_ternarylogic_epi32::<0xF8>(nib, moved, _mm512_set1_epi8(0x10))
}

/// `nib | ((high >> 2v) & 3) << 4` per byte.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn or_bits45(nib: __m512i, high: __m512i, v: usize) -> __m512i {
    let moved = match v {
        0 => _mm512_slli_epi16::<4>(high),
        1 => _mm512_slli_epi16::<2>(high),
        2 => high,
        _ => _mm512_srli_epi16::<2>(high),
    };
    _mm512_ternarylogic_epi32::<0xF8>(nib, moved, _mm512_set1_epi8(0x30))
}

/// The 16 lanes' 6-bit sub-block values `j` of a `Super6` header, from the nibble plane
/// at `lo` and the high-bit plane at `hi`, whose bits start at `shift` for even `j`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn six_bits(lo: *const u8, hi: *const u8, j: usize, shift: i32) -> __m512 {
    let at = 16 * (j / 2);
    let odd = (j % 2) as i32;
    let l = _mm_loadu_si128(lo.add(at) as *const _);
    let h = _mm_loadu_si128(hi.add(at) as *const _);
    let l = _mm_and_si128(
        _mm_srl_epi16(l, _mm_cvtsi32_si128(4 * odd)),
        _mm_set1_epi8(0xF),
    );
    let h = _mm_and_si128(
        _mm_srl_epi16(h, _mm_cvtsi32_si128(shift + 2 * odd)),
        _mm_set1_epi8(3),
    );
    let v = _mm_or_si128(l, _mm_slli_epi16::<4>(h));
    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
}

/// The 16 lanes' scale and min of block `j` of the group whose header is at `hdr`, as
/// `CodePanels::scale` and `min` define them.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn block_scales<const SB: u8>(hdr: *const u8, j: usize, offset: f32) -> (__m512, __m512) {
    let f16s = |at: usize| _mm512_cvtph_ps(_mm256_loadu_si256(hdr.add(at) as *const _));
    match SB {
        MIN => (f16s(0), f16s(32)),
        OFFSET => {
            let d = f16s(0);
            (d, _mm512_mul_ps(d, _mm512_set1_ps(offset)))
        }
        SUPER6 => {
            let sc = six_bits(hdr.add(64), hdr.add(192), j, 0);
            let m = six_bits(hdr.add(128), hdr.add(192), j, 4);
            (
                _mm512_mul_ps(f16s(0), sc),
                _mm512_mul_ps(f16s(32), negate(m)),
            )
        }
        _ => unreachable!("SuperI8 scales are applied in the products"),
    }
}

/// The codes of 64-byte group `g` of a block as two byte vectors (codes `8g..8g + 4` and
/// `8g + 4..8g + 8` of every lane), with the high bits of Q5_K/Q6_K from `high`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn unpack_group<const CB: u8>(raw: __m512i, high: __m512i, g: usize) -> (__m512i, __m512i) {
    let nibble = _mm512_set1_epi8(0x0F);
    let mut c0 = _mm512_and_si512(raw, nibble);
    let mut c1 = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), nibble);
    if CB == HI1 {
        c0 = or_bit4(c0, high, 2 * g);
        c1 = or_bit4(c1, high, 2 * g + 1);
    } else if CB == HI2 {
        c0 = or_bits45(c0, high, 2 * g);
        c1 = or_bits45(c1, high, 2 * g + 1);
    }
    (c0, c1)
}

/// Stores a tile's accumulators: rows `i0..` of `y` (`n` columns), panels `p0..`, the
/// columns past `n` left out.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_tile<const R: usize, const P: usize>(
    y: *mut f32,
    n: usize,
    i0: usize,
    p0: usize,
    acc: &[[__m512; P]; R],
) {
    for r in 0..R {
        for q in 0..P {
            let col = (p0 + q) * PANEL;
            if col < n {
                store_cols(y.add((i0 + r) * n + col), acc[r][q], (n - col).min(PANEL));
            }
        }
    }
}

struct Tile<'a> {
    w: &'a CodePanels,
    k: usize,
    n: usize,
    acts: &'a QuantActs,
    i0: usize,
    y: *mut f32,
    /// `decode_scales` of panels `p_first..`, when the task decoded them up front.
    scales: Option<*const BlockScales>,
    p_first: usize,
}

impl Tile<'_> {
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn panels<const R: usize, const P: usize>(&self, p0: usize, p1: usize) {
        let mut p = p0;
        while p + P <= p1 {
            self.run::<R, P>(p);
            p += P;
        }
        while p < p1 {
            self.run::<R, 1>(p);
            p += 1;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn run<const R: usize, const P: usize>(&self, p0: usize) {
        if self.acts.bits == 8 {
            self.run_codes::<R, P, true>(p0)
        } else {
            self.run_codes::<R, P, false>(p0)
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn run_codes<const R: usize, const P: usize, const A8: bool>(&self, p0: usize) {
        use super::pack::{CodeBits as C, ScaleBits as S};
        match (self.w.codes, self.w.scales) {
            (C::Nib4, S::ScaleOffset(_)) => self.tile::<R, P, NIB4, OFFSET, A8>(p0),
            (C::Nib4, S::ScaleMin) => self.tile::<R, P, NIB4, MIN, A8>(p0),
            (C::Nib4, S::Super6) => self.tile::<R, P, NIB4, SUPER6, A8>(p0),
            (C::Nib4Hi1, S::Super6) => self.tile::<R, P, HI1, SUPER6, A8>(p0),
            (C::Nib4Hi2, S::SuperI8) => self.tile::<R, P, HI2, SUPER_I8, A8>(p0),
            (C::Bytes, S::ScaleOffset(_)) => self.tile::<R, P, BYTES, OFFSET, A8>(p0),
            (cb, sb) => unreachable!("no kernel for {cb:?} codes with {sb:?} scales"),
        }
    }

    /// `R` rows from `i0` against panels `p0..p0 + P`. Per block and (row, panel), the
    /// high and low activation bytes accumulate separately, then `I = (A << 8) + B` is the
    /// exact `Σ code * c` of the scalar twin. With 8-bit activations (`A8`) the high bytes
    /// are zero and only `B` is computed.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const R: usize, const P: usize, const CB: u8, const SB: u8, const A8: bool>(
        &self,
        p0: usize,
    ) {
        let (w, k, acts) = (self.w, self.k, self.acts);
        let block = w.block;
        let nb = k / block;
        let xh = acts.hi.as_ptr().add(self.i0 * k);
        let xl = acts.lo.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i8| _mm512_set1_epi32((p as *const i32).read_unaligned());
        let offset = scale_offset(w);
        let high_at = w.high_bits_at();
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        // `SuperI8`'s sums over the blocks of the current super-block.
        let mut part = [[_mm512_setzero_ps(); P]; R];
        // Per panel, the byte offset up to which lines have been prefetched.
        let mut fetched = [0usize; P];
        for q in 0..P {
            fetched[q] = w.block_at(p0 + q, nb, 0).hdr;
        }
        let data_end = w.data.len();
        for b in 0..nb {
            let mut at = [w.block_at(0, nb, 0); P];
            for q in 0..P {
                at[q] = w.block_at(p0 + q, nb, b);
            }
            // The hardware prefetchers fall behind on these short, header-interleaved
            // streams (a panel's first row tile stalled on every block's first load), so
            // keep each panel's next PREFETCH_AHEAD_AVX512 bytes requested.
            for q in 0..P {
                let want =
                    (at[q].codes + w.code_bytes() + super::PREFETCH_AHEAD_AVX512).min(data_end);
                while fetched[q] < want {
                    _mm_prefetch::<_MM_HINT_T0>(w.data.as_ptr().add(fetched[q]) as *const i8);
                    fetched[q] += 64;
                }
            }
            let base = |q: usize| w.data.as_ptr().add(at[q].codes);
            let mut ia = [[_mm512_setzero_si512(); P]; R];
            let mut ib = [[_mm512_setzero_si512(); P]; R];
            if SB == SUPER_I8 {
                // `SuperI8` multiplies `code - 32`: the low chain starts at `-32 Σ c`, so the
                // block's integer comes out as `I - 32 Σ c` with no extra step.
                for r in 0..R {
                    let i = (self.i0 + r) * nb + b;
                    let offset = _mm512_set1_epi32(-32 * *acts.csum.get_unchecked(i));
                    ib[r] = [offset; P];
                }
            }
            let kb = b * block;
            if CB == BYTES {
                for g in 0..block / 4 {
                    let mut c = [_mm512_setzero_si512(); P];
                    for q in 0..P {
                        c[q] = _mm512_loadu_si512(base(q).add(g * 64) as *const _);
                    }
                    for r in 0..R {
                        let at = r * k + kb + 4 * g;
                        let l = bcast(xl.add(at));
                        for q in 0..P {
                            ib[r][q] = _mm512_dpbusd_epi32(ib[r][q], c[q], l);
                        }
                        if !A8 {
                            let h = bcast(xh.add(at));
                            for q in 0..P {
                                ia[r][q] = _mm512_dpbusd_epi32(ia[r][q], c[q], h);
                            }
                        }
                    }
                }
            } else {
                let mut high = [_mm512_setzero_si512(); P];
                if CB != NIB4 {
                    for q in 0..P {
                        high[q] = _mm512_loadu_si512(base(q).add(high_at) as *const _);
                    }
                }
                for g in 0..block / 8 {
                    let mut c0 = [_mm512_setzero_si512(); P];
                    let mut c1 = [_mm512_setzero_si512(); P];
                    for q in 0..P {
                        let raw = _mm512_loadu_si512(base(q).add(g * 64) as *const _);
                        (c0[q], c1[q]) = unpack_group::<CB>(raw, high[q], g);
                    }
                    for r in 0..R {
                        let at = r * k + kb + 8 * g;
                        let (l0, l1) = (bcast(xl.add(at)), bcast(xl.add(at + 4)));
                        if A8 {
                            // Two chains per (row, panel) still: ia takes the odd groups.
                            for q in 0..P {
                                ib[r][q] = _mm512_dpbusd_epi32(ib[r][q], c0[q], l0);
                                ia[r][q] = _mm512_dpbusd_epi32(ia[r][q], c1[q], l1);
                            }
                            continue;
                        }
                        let (h0, h1) = (bcast(xh.add(at)), bcast(xh.add(at + 4)));
                        for q in 0..P {
                            ia[r][q] = _mm512_dpbusd_epi32(ia[r][q], c0[q], h0);
                            ib[r][q] = _mm512_dpbusd_epi32(ib[r][q], c0[q], l0);
                            ia[r][q] = _mm512_dpbusd_epi32(ia[r][q], c1[q], h1);
                            ib[r][q] = _mm512_dpbusd_epi32(ib[r][q], c1[q], l1);
                        }
                    }
                }
            }
            for q in 0..P {
                if SB == SUPER_I8 {
                    self.fold_super_i8::<R, P, CB, A8>(&ia, &ib, at[q], b, q, &mut part, &mut acc);
                    continue;
                }
                let (d, mn) = match self.scales {
                    Some(s) => {
                        let s = &*s.add((p0 + q - self.p_first) * nb + b);
                        (_mm512_load_ps(s.d.as_ptr()), _mm512_load_ps(s.min.as_ptr()))
                    }
                    None => block_scales::<SB>(w.data.as_ptr().add(at[q].hdr), at[q].j, offset),
                };
                for r in 0..R {
                    let at = (self.i0 + r) * nb + b;
                    let s = _mm512_set1_ps(*acts.scale.get_unchecked(at));
                    let sum = _mm512_set1_ps(*acts.sum.get_unchecked(at));
                    let dot = block_dot::<CB, A8>(ia[r][q], ib[r][q]);
                    acc[r][q] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, s), acc[r][q]);
                    acc[r][q] = _mm512_fmadd_ps(mn, sum, acc[r][q]);
                }
            }
        }
        store_tile(self.y, self.n, self.i0, p0, &acc);
    }

    /// Panel `q`'s f32 steps for block `b` of a `SuperI8` matrix (`scalar::codes_gemm`),
    /// whose chains hold `I - 32 Σ c`: `J = (I - 32 Σ c) * sc`, `part = fma(J, s, part)`, and at the super-block's last
    /// block `acc = fma(part, d, acc)`. `I - 32 Σ c` is within 16 · 32 · 32512 < 2²⁴, so
    /// its conversion is exact and the f32 multiply by `sc` rounds the exact `J` once,
    /// as converting the integer `J` does (a `vpmulld` is two uops to `vmulps`' one).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn fold_super_i8<const R: usize, const P: usize, const CB: u8, const A8: bool>(
        &self,
        ia: &[[__m512i; P]; R],
        ib: &[[__m512i; P]; R],
        at: super::pack::BlockAt,
        b: usize,
        q: usize,
        part: &mut [[__m512; P]; R],
        acc: &mut [[__m512; P]; R],
    ) {
        let (acts, nb) = (self.acts, self.k / self.w.block);
        let hdr = self.w.data.as_ptr().add(at.hdr);
        let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(hdr.add(32 + 16 * at.j) as *const _));
        let sc = _mm512_cvtepi32_ps(sc);
        for r in 0..R {
            let i = (self.i0 + r) * nb + b;
            let s = _mm512_set1_ps(*acts.scale.get_unchecked(i));
            let dot = block_dot::<CB, A8>(ia[r][q], ib[r][q]);
            let j = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), sc);
            part[r][q] = _mm512_fmadd_ps(j, s, part[r][q]);
        }
        if at.j + 1 == self.w.scales.blocks_per_group() {
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(hdr as *const _));
            for r in 0..R {
                acc[r][q] = _mm512_fmadd_ps(part[r][q], d, acc[r][q]);
                part[r][q] = _mm512_setzero_ps();
            }
        }
    }
}

/// A block's exact `I = Σ code * c` from the tile's two chains: high and low activation
/// bytes (`I = (A << 8) + B`), or with 8-bit activations (`A8`) the low bytes' chains.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_dot<const CB: u8, const A8: bool>(ia: __m512i, ib: __m512i) -> __m512i {
    if A8 && CB != BYTES {
        _mm512_add_epi32(ia, ib)
    } else if A8 {
        ib
    } else {
        _mm512_add_epi32(_mm512_slli_epi32::<8>(ia), ib)
    }
}
