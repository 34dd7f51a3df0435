//! AVX2 twin of the integer matmul, for CPUs without AVX-512 VNNI: `vpmaddubsw` stands in
//! for `vpdpbusd`. It multiplies unsigned codes by signed activation bytes and adds each
//! adjacent pair of products into a saturating 16-bit lane, so it is exact while
//! `2 * code * 128 < 32768`, i.e. codes up to 127; wider codes (Q8_0, offset to 0..=255)
//! are split into nibbles, `code = 16 * high + low`.
//!
//! The pair sums of small codes are added further as 16-bit words before one
//! `vpmaddwd` widens them (`word_sums`): for 4-bit codes eight pair sums stay within
//! 8 · 2 · 15 · 128 = 30720, so a 32-code block takes one widening per activation byte
//! instead of eight. On the Zen 3 EPYC measured, `vpmaddubsw` and `vpmaddwd` share the
//! two multiply pipes: the widenings were half of the kernel's multiplies.
// Register tiles are indexed [row] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

mod words;

use super::acts::QuantActs;
use super::pack::{CodePanels, PANEL};
use super::shared_out::SharedOut;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Most activation rows per tile. A tile covers the whole panel (both halves of eight
/// lanes), so each activation broadcast feeds two `vpmaddubsw`; a row takes two 16-bit
/// sums per half with 16-bit activations (high and low bytes), one with 8-bit ones, and
/// AVX2 has 16 vector registers.
const R16: usize = 3;
const R8: usize = 6;

/// Eight-lane halves of a panel.
const H: usize = PANEL / 8;

/// Activation rows per chunk (see `codes_panels`).
const ROW_CHUNK: usize = 24;

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
    if acts.has_wide {
        words::codes_panels(w, k, n, p0, p1, acts, m, y);
        return;
    }
    use super::pack::{CodeBits as C, ScaleBits as S};
    let wide = w.codes == C::Bytes && w.max_code > 127;
    let a8 = acts.bits == 8;
    // Rows in chunks whose activations stay in L2 while the task's panels pass over
    // them (a prefill's 512 rows of 2048 are 2 MiB); within a chunk, each panel meets
    // all of its row tiles while its codes are in L1.
    let mut scales = SCALES.with(|cell| cell.take());
    for c0 in (0..m).step_by(ROW_CHUNK) {
        let c1 = (c0 + ROW_CHUNK).min(m);
        for p in p0..p1 {
            if w.scales == S::Super6 {
                reserve_scales(&mut scales, k / w.block);
            }
            let mut i0 = c0;
            while i0 < c1 {
                // As few tiles as the tile height allows, of nearly equal rows (16 rows in
                // tiles of 3 go 3, 3, 3, 3, 2, 2 rather than leave a tile of 1).
                let left = c1 - i0;
                let rows = left.div_ceil(left.div_ceil(if a8 { R8 } else { R16 }));
                let t = Tile {
                    w,
                    k,
                    n,
                    acts,
                    i0,
                    p,
                    // The first tile over a panel brings it in and decodes its scales;
                    // the others find both cached.
                    first: i0 == c0,
                    scales: scales.as_mut_ptr(),
                };
                macro_rules! by_rows {
                    ($cb:expr, $sb:expr, $block:expr) => {
                        match (rows, a8) {
                            (6, true) => t.run::<6, { $cb }, { $sb }, { $block }, true>(y),
                            (5, true) => t.run::<5, { $cb }, { $sb }, { $block }, true>(y),
                            (4, true) => t.run::<4, { $cb }, { $sb }, { $block }, true>(y),
                            (3, true) => t.run::<3, { $cb }, { $sb }, { $block }, true>(y),
                            (2, true) => t.run::<2, { $cb }, { $sb }, { $block }, true>(y),
                            (_, true) => t.run::<1, { $cb }, { $sb }, { $block }, true>(y),
                            (3, false) => t.run::<3, { $cb }, { $sb }, { $block }, false>(y),
                            (2, false) => t.run::<2, { $cb }, { $sb }, { $block }, false>(y),
                            (_, false) => t.run::<1, { $cb }, { $sb }, { $block }, false>(y),
                        }
                    };
                }
                match (w.codes, w.scales, wide, w.block) {
                    (C::Nib4, S::ScaleOffset(_), _, 32) => by_rows!(NIB4, OFFSET, 32),
                    (C::Nib4, S::ScaleMin, _, 32) => by_rows!(NIB4, MIN, 32),
                    (C::Nib4, S::Super6, _, 32) => by_rows!(NIB4, SUPER6, 32),
                    (C::Nib4Hi1, S::Super6, _, 32) => by_rows!(HI1, SUPER6, 32),
                    (C::Nib4Hi2, S::SuperI8, _, 16) => by_rows!(HI2, SUPER_I8, 16),
                    (C::Bytes, S::ScaleOffset(_), false, 32) => by_rows!(BYTES, OFFSET, 32),
                    (C::Bytes, S::ScaleOffset(_), true, 32) => by_rows!(WIDE_BYTES, OFFSET, 32),
                    (cb, sb, _, block) => {
                        unreachable!(
                            "no kernel for {cb:?} codes with {sb:?} scales in blocks of {block}"
                        )
                    }
                }
                i0 += rows;
            }
        }
    }
    SCALES.with(|cell| cell.replace(scales));
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

/// How many `vpmaddubsw` results of codes `CB` may be added as 16-bit words before they
/// must be widened: each is two products of a code and an activation byte (at most 128
/// in magnitude), and the sum must stay within ±32767. 4-bit codes and the nibbles of wide
/// bytes (≤ 15): 8 (30720); 5-bit (≤ 31): 4 (31744); 6-bit (≤ 63): 2 (32256); bytes
/// (≤ 127): 1.
const fn word_sums(cb: u8) -> usize {
    match cb {
        NIB4 | WIDE_BYTES => 8,
        HI1 => 4,
        HI2 => 2,
        _ => 1,
    }
}

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

/// Eight lanes' scale and min of a `ScaleMin` or `ScaleOffset` block, lanes from `8 * half`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_scales<const SB: u8>(hdr: *const u8, half: usize, offset: f32) -> (__m256, __m256) {
    let f16s = |at: usize| _mm256_cvtph_ps(_mm_loadu_si128(hdr.add(at + 16 * half) as *const _));
    match SB {
        MIN => (f16s(0), f16s(32)),
        OFFSET => {
            let d = f16s(0);
            (d, _mm256_mul_ps(d, _mm256_set1_ps(offset)))
        }
        _ => unreachable!("Super6 scales come from decode_super6, SuperI8's from the products"),
    }
}

/// One `Super6` block's scales and mins for the 16 lanes of a panel, as
/// `CodePanels::scale` and `min` define them.
#[repr(C, align(32))]
#[derive(Clone, Copy)]
struct PanelScales {
    d: [f32; PANEL],
    min: [f32; PANEL],
}

thread_local! {
    /// The decoded `Super6` scales of the panel being multiplied.
    static SCALES: RefCell<Vec<PanelScales>> = const { RefCell::new(Vec::new()) };
}

/// Grows `out` to at least `len` entries (every entry used is overwritten first).
fn reserve_scales(out: &mut Vec<PanelScales>, len: usize) {
    if out.len() < len {
        out.resize(
            len,
            PanelScales {
                d: [0.0; PANEL],
                min: [0.0; PANEL],
            },
        );
    }
}

/// The scales of blocks `0..nb` of panel `p` of a `Super6` matrix into `out[..nb]`, for
/// all of the panel's row tiles and both halves, before the word kernel's tiles (the byte
/// tiles decode a group at a time as they go: `Tile::run`). Decoding them in every tile,
/// a block's 6-bit fields at a time, was a third of the vector instructions of batch-1
/// decode.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_super6(w: &CodePanels, p: usize, nb: usize, out: &mut [PanelScales]) {
    assert!(out.len() >= nb);
    // This is the panel's first touch: ask for every header before waiting on the first.
    for g in 0..nb / 8 {
        let hdr = w.data.as_ptr().add(w.block_at(p, nb, 8 * g).hdr);
        for line in (0..256).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(hdr.add(line) as *const i8);
        }
    }
    for g in 0..nb / 8 {
        let hdr = w.data.as_ptr().add(w.block_at(p, nb, 8 * g).hdr);
        decode_super6_group(hdr, out.as_mut_ptr().add(8 * g));
    }
}

/// The scales of the eight blocks of the `Super6` group whose header is at `hdr` into
/// `out[..8]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn decode_super6_group(hdr: *const u8, out: *mut PanelScales) {
    let (nib, two) = (_mm_set1_epi8(0xF), _mm_set1_epi8(3));
    let neg = _mm256_set1_ps(-0.0);
    let load = |p: *const u8| _mm_loadu_si128(p as *const _);
    // Per 16-bit lane shifts, masked afterwards: a byte's field bits come from that byte.
    let bits = |v: __m128i, shift: i32, mask: __m128i| {
        _mm_and_si128(_mm_srl_epi16(v, _mm_cvtsi32_si128(shift)), mask)
    };
    let d = [
        _mm256_cvtph_ps(load(hdr)),
        _mm256_cvtph_ps(load(hdr.add(16))),
    ];
    let dmin = [
        _mm256_cvtph_ps(load(hdr.add(32))),
        _mm256_cvtph_ps(load(hdr.add(48))),
    ];
    for t in 0..4 {
        // Byte r of these holds lane r's fields of blocks 2t and 2t + 1.
        let (sl, ml, h) = (
            load(hdr.add(64 + 16 * t)),
            load(hdr.add(128 + 16 * t)),
            load(hdr.add(192 + 16 * t)),
        );
        for odd in 0..2 {
            // Block 2t + odd: nibble `odd` of the low planes, and of the high plane
            // bits 2 odd (scale) and 4 + 2 odd (min).
            let (lo_shift, hi_shift) = (4 * odd as i32, 2 * odd as i32);
            let sc = _mm_or_si128(
                bits(sl, lo_shift, nib),
                _mm_slli_epi16::<4>(bits(h, hi_shift, two)),
            );
            let m = _mm_or_si128(
                bits(ml, lo_shift, nib),
                _mm_slli_epi16::<4>(bits(h, 4 + hi_shift, two)),
            );
            let e = &mut *out.add(2 * t + odd);
            for hh in 0..2 {
                let lanes = |v: __m128i| {
                    let v = if hh == 0 { v } else { _mm_srli_si128::<8>(v) };
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
                };
                _mm256_store_ps(
                    e.d.as_mut_ptr().add(8 * hh),
                    _mm256_mul_ps(d[hh], lanes(sc)),
                );
                _mm256_store_ps(
                    e.min.as_mut_ptr().add(8 * hh),
                    _mm256_mul_ps(dmin[hh], _mm256_xor_ps(lanes(m), neg)),
                );
            }
        }
    }
}

/// Rows `i0..` against panel `p` (both halves of eight lanes).
struct Tile<'a> {
    w: &'a CodePanels,
    k: usize,
    n: usize,
    acts: &'a QuantActs,
    i0: usize,
    p: usize,
    /// Whether this is the panel's first tile, which requests the panel's next bytes
    /// ahead of the loads and decodes `Super6` scales into `scales`.
    first: bool,
    /// Panel `p`'s decoded `Super6` scales, one entry per block.
    scales: *mut PanelScales,
}

/// One block's codes for eight lanes, as byte vectors of four codes per lane: vector `v`
/// holds codes `4v..4v + 4` (`WIDE_BYTES` codes are taken only by `code_vec`).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_codes<const CB: u8, const BLOCK: usize>(
    base: *const u8,
    high: *const u8,
    out: &mut [__m256i; 16],
) {
    let nibble = _mm256_set1_epi8(0x0F);
    if CB == BYTES {
        for v in 0..BLOCK / 4 {
            out[v] = _mm256_loadu_si256(base.add(v * 64) as *const _);
        }
        return;
    }
    assert!(CB != WIDE_BYTES, "split bytes are unpacked by code_vec");
    let high = if CB == NIB4 {
        _mm256_setzero_si256()
    } else {
        _mm256_loadu_si256(high as *const _)
    };
    for g in 0..BLOCK / 8 {
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
        out[2 * g] = c0;
        out[2 * g + 1] = c1;
    }
}

/// Vector `v` of what `block_codes` gives, alone: a row tile takes each once, so
/// unpacking it straight into a register spares the block's round trip through memory.
/// `WIDE_BYTES` blocks give twice as many: the low nibbles of codes `4v..4v + 4` as vector
/// `v`, their high nibbles as vector `BLOCK / 4 + v`, so that each kind's sums can be added
/// as words before one widening with its weight (1 or 16).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn code_vec<const CB: u8, const BLOCK: usize>(
    base: *const u8,
    high: *const u8,
    v: usize,
) -> __m256i {
    let nibble = _mm256_set1_epi8(0x0F);
    let load = |p: *const u8| _mm256_loadu_si256(p as *const _);
    if CB == BYTES {
        return load(base.add(v * 64));
    }
    if CB == WIDE_BYTES {
        let (raw, high_nibbles) = (load(base.add(v % (BLOCK / 4) * 64)), v >= BLOCK / 4);
        return if high_nibbles {
            _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble)
        } else {
            _mm256_and_si256(raw, nibble)
        };
    }
    // Both nibble forms hold two vectors per 32 loaded bytes: even `v` the low nibbles.
    let raw = load(base.add(v / 2 * 64));
    let c = if v.is_multiple_of(2) {
        _mm256_and_si256(raw, nibble)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(raw), nibble)
    };
    match CB {
        HI1 => or_high(c, load(high), 4 - v as i32, 0x10),
        HI2 => or_high(c, load(high), 4 - 2 * v as i32, 0x30),
        _ => c,
    }
}

impl Tile<'_> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run<
        const RR: usize,
        const CB: u8,
        const SB: u8,
        const BLOCK: usize,
        const A8: bool,
    >(
        &self,
        y: &SharedOut,
    ) {
        let (w, k, acts) = (self.w, self.k, self.acts);
        let nb = k / BLOCK;
        let xh = acts.hi.as_ptr().add(self.i0 * k);
        let xl = acts.lo.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i8| _mm256_set1_epi32((p as *const i32).read_unaligned());
        let (ones, x256) = (_mm256_set1_epi16(1), _mm256_set1_epi16(256));
        let offset = super::x86::scale_offset(w);
        let high_at = w.high_bits_at();
        // Code vectors per block, and how many of them share one widening.
        let vecs = if CB == WIDE_BYTES {
            BLOCK / 2
        } else {
            BLOCK / 4
        };
        let sums = word_sums(CB);
        let mut acc = [[_mm256_setzero_ps(); H]; RR];
        // `SuperI8`'s sums over the blocks of the current super-block.
        let mut part = [[_mm256_setzero_ps(); H]; RR];
        // As in the AVX-512 kernel: keep the panel's next bytes requested.
        let mut fetched = w.block_at(self.p, nb, 0).hdr;
        let data_end = w.data.len();
        for b in 0..nb {
            let at = w.block_at(self.p, nb, b);
            if self.first {
                let want = (at.codes + w.code_bytes() + super::PREFETCH_AHEAD_AVX2).min(data_end);
                while fetched < want {
                    _mm_prefetch::<_MM_HINT_T0>(w.data.as_ptr().add(fetched) as *const i8);
                    fetched += 64;
                }
                // A group's scales where its blocks begin, not the whole panel's before
                // its first block: the header has just come in with the codes, and the
                // requests ahead keep their pace (at batch 1 the panel-wide pass was a
                // fifth of the kernel's time, with no request issued for the codes).
                if SB == SUPER6 && at.j == 0 {
                    decode_super6_group(w.data.as_ptr().add(at.hdr), self.scales.add(b));
                }
            }
            let base: [*const u8; H] =
                std::array::from_fn(|h| w.data.as_ptr().add(at.codes + 32 * h));
            // Per row and half the block's exact `I = Σ code * c`: 256 times the high
            // bytes' products plus the low bytes', widened from 16-bit sums `sums` vectors
            // at a time.
            let mut dot = [[_mm256_setzero_si256(); H]; RR];
            let kb = b * BLOCK;
            for v0 in (0..vecs).step_by(sums) {
                let mut sl = [[_mm256_setzero_si256(); H]; RR];
                let mut sh = [[_mm256_setzero_si256(); H]; RR];
                for v in v0..v0 + sums {
                    let codes: [__m256i; H] = std::array::from_fn(|h| {
                        code_vec::<CB, BLOCK>(base[h], base[h].add(high_at), v)
                    });
                    // Activation bytes of code vector v: for WIDE_BYTES the low and the high
                    // nibbles of codes 4v.. come BLOCK / 4 vectors apart.
                    let kk = 4 * (v % (BLOCK / 4));
                    for r in 0..RR {
                        let at = r * k + kb + kk;
                        let x = bcast(xl.add(at));
                        for h in 0..H {
                            sl[r][h] =
                                _mm256_add_epi16(sl[r][h], _mm256_maddubs_epi16(codes[h], x));
                        }
                        if !A8 {
                            let x = bcast(xh.add(at));
                            for h in 0..H {
                                sh[r][h] =
                                    _mm256_add_epi16(sh[r][h], _mm256_maddubs_epi16(codes[h], x));
                            }
                        }
                    }
                }
                // WIDE_BYTES's high nibbles (the second half of its vectors) weigh 16.
                let (wl, wh) = if CB == WIDE_BYTES && v0 >= BLOCK / 4 {
                    (_mm256_set1_epi16(16), _mm256_set1_epi16(16 * 256))
                } else {
                    (ones, x256)
                };
                for r in 0..RR {
                    for h in 0..H {
                        dot[r][h] = _mm256_add_epi32(dot[r][h], _mm256_madd_epi16(sl[r][h], wl));
                        if !A8 {
                            dot[r][h] =
                                _mm256_add_epi32(dot[r][h], _mm256_madd_epi16(sh[r][h], wh));
                        }
                    }
                }
            }
            finish_block::<RR, SB, false>(
                w,
                acts,
                self.i0,
                (nb, b),
                at,
                self.scales,
                offset,
                &dot,
                &mut part,
                &mut acc,
            );
        }
        store_tile(y, self.n, self.i0, self.p, &acc);
    }
}

/// Block `b` (of `nb`, at `at`)'s f32 steps (`scalar::codes_gemm`) for rows
/// `i0..i0 + RR` against both halves of its panel, from each row and half's exact integer product `dot`: `I`, or
/// for `SuperI8` `J` itself when `FOLDED` (the word kernel's words hold `(code - 32) * sc`)
/// and otherwise `I`, folded here as the AVX-512 byte kernel folds it. `scales` holds
/// panel `p`'s `decode_super6` for `Super6` matrices.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_block<const RR: usize, const SB: u8, const FOLDED: bool>(
    w: &CodePanels,
    acts: &QuantActs,
    i0: usize,
    (nb, b): (usize, usize),
    at: super::pack::BlockAt,
    scales: *const PanelScales,
    offset: f32,
    dot: &[[__m256i; H]; RR],
    part: &mut [[__m256; H]; RR],
    acc: &mut [[__m256; H]; RR],
) {
    if SB == SUPER_I8 {
        // `scalar::codes_gemm`'s folded form, `J = (I - 32 Σ c) * sc` as the AVX-512 byte
        // kernel computes it (`Tile::fold_super_i8`): `I - 32 Σ c` is within 2^24, so both
        // forms round the exact `J` once.
        let hdr = w.data.as_ptr().add(at.hdr);
        let sc: [__m256; H] = std::array::from_fn(|h| {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                hdr.add(32 + 16 * at.j + 8 * h) as *const _,
            )))
        });
        for r in 0..RR {
            let i = (i0 + r) * nb + b;
            let s = _mm256_set1_ps(*acts.scale.get_unchecked(i));
            let offset = _mm256_set1_epi32(32 * *acts.csum.get_unchecked(i));
            for h in 0..H {
                let j = if FOLDED {
                    _mm256_cvtepi32_ps(dot[r][h])
                } else {
                    _mm256_mul_ps(
                        _mm256_cvtepi32_ps(_mm256_sub_epi32(dot[r][h], offset)),
                        sc[h],
                    )
                };
                part[r][h] = _mm256_fmadd_ps(j, s, part[r][h]);
            }
        }
        if at.j + 1 == w.scales.blocks_per_group() {
            for h in 0..H {
                let d = _mm256_cvtph_ps(_mm_loadu_si128(hdr.add(16 * h) as *const _));
                for r in 0..RR {
                    acc[r][h] = _mm256_fmadd_ps(part[r][h], d, acc[r][h]);
                    part[r][h] = _mm256_setzero_ps();
                }
            }
        }
        return;
    }
    let (mut d, mut mn) = ([_mm256_setzero_ps(); H], [_mm256_setzero_ps(); H]);
    for h in 0..H {
        (d[h], mn[h]) = if SB == SUPER6 {
            let e = &*scales.add(b);
            (
                _mm256_load_ps(e.d.as_ptr().add(8 * h)),
                _mm256_load_ps(e.min.as_ptr().add(8 * h)),
            )
        } else {
            block_scales::<SB>(w.data.as_ptr().add(at.hdr), h, offset)
        };
    }
    for r in 0..RR {
        let at = (i0 + r) * nb + b;
        let s = _mm256_set1_ps(*acts.scale.get_unchecked(at));
        let sum = _mm256_set1_ps(*acts.sum.get_unchecked(at));
        for h in 0..H {
            let x = _mm256_cvtepi32_ps(dot[r][h]);
            acc[r][h] = _mm256_fmadd_ps(x, _mm256_mul_ps(d[h], s), acc[r][h]);
            acc[r][h] = _mm256_fmadd_ps(mn[h], sum, acc[r][h]);
        }
    }
}

/// Rows `i0..i0 + RR` of panel `p`'s outputs (the columns below `n`) from `acc`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_tile<const RR: usize>(
    y: &SharedOut,
    n: usize,
    i0: usize,
    p: usize,
    acc: &[[__m256; H]; RR],
) {
    for h in 0..H {
        let col = p * PANEL + 8 * h;
        if col >= n {
            return;
        }
        let valid = (n - col).min(8);
        for r in 0..RR {
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), acc[r][h]);
            let row = (i0 + r) * n + col;
            // SAFETY: (row, col..col + valid) are this task's own columns.
            y.copy_from_unshared(row, &out[..valid]);
        }
    }
}
