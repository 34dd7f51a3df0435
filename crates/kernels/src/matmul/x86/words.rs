//! The word kernel: for batches of enough rows with 16-bit activation codes, a task
//! widens its panels' codes to 16-bit words once and multiplies them with `vpdpwssd`
//! against the activation codes as words (`QuantActs::wide`), bitwise the byte kernel's
//! results (docs/architecture.md, "Weight layout").
// Register tiles are indexed [row][panel] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::super::acts::{QuantActs, WIDE_TILE};
use super::super::pack::{CodePanels, ScaleBits, PANEL};
use super::super::shared_out::SharedOut;
use super::{decode_scales, store_tile, unpack_group, BlockScales, BYTES, HI1, HI2, NIB4};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Panels widened at a time for rows of `k`: what fits WIDE_BYTES, but at least the two
/// a full tile multiplies together.
pub(super) fn chunk_panels(k: usize) -> usize {
    (WIDE_BYTES / (k * PANEL * 2)).max(2)
}

/// Panels `c0..c1` times all `m` rows: widens their codes (streaming them in), decodes
/// their scales into `decoded`, and runs the row tiles.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chunk(
    w: &CodePanels,
    k: usize,
    n: usize,
    acts: &QuantActs,
    m: usize,
    y: &SharedOut,
    c0: usize,
    c1: usize,
    decoded: &mut Vec<BlockScales>,
) {
    let nb = k / w.block;
    // Widening first: it streams the panels in with prefetches, so the scale headers are
    // in cache when decoded.
    let words = WORDS.with(|cell| {
        let mut words = cell.borrow_mut();
        widen_codes(w, nb, c0, c1, &mut words);
        words.as_ptr()
    });
    // Q6_K's scales are in the widened words and its `d` is read from the headers.
    let folded = w.scales == ScaleBits::SuperI8;
    if !folded {
        decode_scales(w, nb, c0, c1, decoded);
    }
    let mut i0 = 0;
    while i0 < m {
        let r = (m - i0).min(WIDE_TILE);
        let t = WideTile {
            w,
            k,
            n,
            acts,
            i0,
            y: y.as_ptr(),
            scales: decoded.as_ptr(),
            words,
            p_first: c0,
        };
        // At least ten independent `vpdpwssd` chains keep both pipes busy (about five
        // cycles of latency each): a C loop of this shape ran 5.4 G/s per core with 12
        // chains, 3.5–3.9 with 8.
        match (r, folded) {
            (6, false) => t.panels::<6, 2, 1, false>(c0, c1),
            (5, false) => t.panels::<5, 2, 1, false>(c0, c1),
            (4, false) => t.panels::<4, 2, 2, false>(c0, c1),
            (3, false) => t.panels::<3, 2, 2, false>(c0, c1),
            (2, false) => t.panels::<2, 4, 2, false>(c0, c1),
            (_, false) => t.panels::<1, 4, 2, false>(c0, c1),
            (6, true) => t.panels::<6, 2, 1, true>(c0, c1),
            (5, true) => t.panels::<5, 2, 1, true>(c0, c1),
            (4, true) => t.panels::<4, 2, 2, true>(c0, c1),
            (3, true) => t.panels::<3, 2, 2, true>(c0, c1),
            (2, true) => t.panels::<2, 4, 2, true>(c0, c1),
            (_, true) => t.panels::<1, 4, 2, true>(c0, c1),
        }
        i0 += r;
    }
}

/// The most bytes of widened codes a task keeps at once: a panel of rows of 2048 is
/// 64 KiB of words, so two of them stay in L2 while every row tile passes over them.
const WIDE_BYTES: usize = 128 << 10;

thread_local! {
    /// The codes of the panels a task multiplies as words, widened once for all its row
    /// tiles: per panel and block, `block / 2` vectors, vector `v` holding in lane `r`
    /// codes `2v` and `2v + 1` of row `r` (for `SuperI8`, `(code - 32) * sc`: within
    /// ±4096).
    static WORDS: RefCell<Vec<__m512i>> = const { RefCell::new(Vec::new()) };
}

/// Fills `out` with the codes of blocks `0..nb` of panels `p0..p1` as words.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn widen_codes(w: &CodePanels, nb: usize, p0: usize, p1: usize, out: &mut Vec<__m512i>) {
    use super::super::pack::CodeBits as C;
    match (w.codes, w.scales) {
        (C::Nib4Hi2, ScaleBits::SuperI8) => widen_codes_as::<HI2, true>(w, nb, p0, p1, out),
        (C::Nib4, _) => widen_codes_as::<NIB4, false>(w, nb, p0, p1, out),
        (C::Nib4Hi1, _) => widen_codes_as::<HI1, false>(w, nb, p0, p1, out),
        (C::Nib4Hi2, _) => widen_codes_as::<HI2, false>(w, nb, p0, p1, out),
        (C::Bytes, _) => widen_codes_as::<BYTES, false>(w, nb, p0, p1, out),
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn widen_codes_as<const CB: u8, const FOLD: bool>(
    w: &CodePanels,
    nb: usize,
    p0: usize,
    p1: usize,
    out: &mut Vec<__m512i>,
) {
    let pairs = w.block / 2;
    let needed = (p1 - p0) * nb * pairs;
    // Every entry below is overwritten: grow the buffer, never refill it.
    if out.len() < needed {
        out.resize(needed, _mm512_setzero_si512());
    }
    // Lane `r` of a byte vector holds four consecutive codes; these pick the first two
    // (then the last two) into the lane's two words, zero-extended.
    let z = -128i8;
    let first = _mm512_broadcast_i32x4(_mm_setr_epi8(
        0, z, 1, z, 4, z, 5, z, 8, z, 9, z, 12, z, 13, z,
    ));
    let last = _mm512_broadcast_i32x4(_mm_setr_epi8(
        2, z, 3, z, 6, z, 7, z, 10, z, 11, z, 14, z, 15, z,
    ));
    let high_at = w.high_bits_at();
    let dst = out.as_mut_ptr();
    let data_end = w.data.len();
    // This is where the weights come in from memory (the tiles read the words): keep the
    // next PREFETCH_AHEAD_AVX512 bytes requested, as `Tile::tile` does.
    let mut fetched = w.block_at(p0, nb, 0).hdr;
    for p in p0..p1 {
        for b in 0..nb {
            let at = w.block_at(p, nb, b);
            let want =
                (at.codes + w.code_bytes() + super::super::PREFETCH_AHEAD_AVX512).min(data_end);
            while fetched < want {
                _mm_prefetch::<_MM_HINT_T0>(w.data.as_ptr().add(fetched) as *const i8);
                fetched += 64;
            }
            let base = w.data.as_ptr().add(at.codes);
            let d = dst.add(((p - p0) * nb + b) * pairs);
            // Lane `r`'s `sc` in both of its words.
            let sc = if FOLD {
                let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(
                    w.data.as_ptr().add(at.hdr + 32 + 16 * at.j) as *const _,
                ));
                _mm512_or_si512(
                    _mm512_and_si512(sc, _mm512_set1_epi32(0xFFFF)),
                    _mm512_slli_epi32::<16>(sc),
                )
            } else {
                _mm512_setzero_si512()
            };
            let words = |v: __m512i| {
                if FOLD {
                    _mm512_mullo_epi16(_mm512_sub_epi16(v, _mm512_set1_epi16(32)), sc)
                } else {
                    v
                }
            };
            // Byte vector `t` holds codes 4t..4t + 4 of every lane.
            let put = |t: usize, bytes: __m512i| {
                _mm512_store_si512(d.add(2 * t), words(_mm512_shuffle_epi8(bytes, first)));
                _mm512_store_si512(d.add(2 * t + 1), words(_mm512_shuffle_epi8(bytes, last)));
            };
            if CB == BYTES {
                for g in 0..w.block / 4 {
                    put(g, _mm512_loadu_si512(base.add(g * 64) as *const _));
                }
                continue;
            }
            let high = if CB != NIB4 {
                _mm512_loadu_si512(base.add(high_at) as *const _)
            } else {
                _mm512_setzero_si512()
            };
            for g in 0..w.block / 8 {
                let raw = _mm512_loadu_si512(base.add(g * 64) as *const _);
                let (c0, c1) = unpack_group::<CB>(raw, high, g);
                put(2 * g, c0);
                put(2 * g + 1, c1);
            }
        }
    }
}

/// `acc + Σ` of the two signed word products per lane. Written out because LLVM splits
/// the intrinsic into `vpmaddwd` and `vpaddd` unless tuning for a CPU it knows to have a
/// fast `vpdpwssd`, which doubles the instructions; on the AVX-512 VNNI cores measured
/// (bench/vnni_pipes.c with `vpdpwssd`) it issues at the rate of `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
unsafe fn dpwssd(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
    let mut acc = acc;
    std::arch::asm!(
        "vpdpwssd {acc}, {w}, {a}",
        acc = inout(zmm_reg) acc,
        w = in(zmm_reg) w,
        a = in(zmm_reg) a,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// A row tile against widened codes (`widen_codes`) and decoded scales (`decode_scales`)
/// of panels `p_first..`.
struct WideTile<'a> {
    w: &'a CodePanels,
    k: usize,
    n: usize,
    acts: &'a QuantActs,
    i0: usize,
    y: *mut f32,
    scales: *const BlockScales,
    words: *const __m512i,
    p_first: usize,
}

impl WideTile<'_> {
    /// Panels `p0..p1` in steps of `P` with `S` chains per output, the rest one at a time
    /// with two.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn panels<const R: usize, const P: usize, const S: usize, const FOLD: bool>(
        &self,
        p0: usize,
        p1: usize,
    ) {
        let mut p = p0;
        while p + P <= p1 {
            self.tile::<R, P, S, FOLD>(p);
            p += P;
        }
        while p < p1 {
            self.tile::<R, 1, 2, FOLD>(p);
            p += 1;
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile<const R: usize, const P: usize, const S: usize, const FOLD: bool>(
        &self,
        p0: usize,
    ) {
        match self.w.block {
            16 => self.tile_as::<R, P, S, 8, FOLD>(p0),
            32 if !FOLD => self.tile_as::<R, P, S, 16, FOLD>(p0),
            b => unreachable!("no word kernel for blocks of {b}"),
        }
    }

    /// `R` rows from `i0` against panels `p0..p0 + P`: per block and (row, panel) the
    /// exact `I = Σ code * c` in `S` chains (1, or 2: even and odd word pairs, for
    /// latency when the tile is small), then the same f32 steps as `Tile::tile` (for
    /// `FOLD`, `SuperI8`'s: the words already hold `(code - 32) * sc`, so the integer is
    /// its `J`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn tile_as<
        const R: usize,
        const P: usize,
        const S: usize,
        const PAIRS: usize,
        const FOLD: bool,
    >(
        &self,
        p0: usize,
    ) {
        let (k, acts) = (self.k, self.acts);
        let block = 2 * PAIRS;
        let nb = k / block;
        // This row tile's codes: per pair of codes, WIDE_TILE rows' pairs side by side.
        let x = acts.wide.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i16| _mm512_set1_epi32((p as *const i32).read_unaligned());
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let mut part = [[_mm512_setzero_ps(); P]; R];
        for b in 0..nb {
            let mut e = [[_mm512_setzero_si512(); P]; R];
            let mut o = [[_mm512_setzero_si512(); P]; R];
            let kb = b * block;
            let mut words = [self.words; P];
            for q in 0..P {
                words[q] = self.words.add(((p0 + q - self.p_first) * nb + b) * PAIRS);
            }
            for v in (0..PAIRS).step_by(2) {
                let mut w0 = [_mm512_setzero_si512(); P];
                let mut w1 = [_mm512_setzero_si512(); P];
                for q in 0..P {
                    w0[q] = _mm512_load_si512(words[q].add(v));
                    w1[q] = _mm512_load_si512(words[q].add(v + 1));
                }
                for r in 0..R {
                    let at = ((kb / 2 + v) * WIDE_TILE + r) * 2;
                    let (a0, a1) = (bcast(x.add(at)), bcast(x.add(at + 2 * WIDE_TILE)));
                    for q in 0..P {
                        e[r][q] = dpwssd(e[r][q], w0[q], a0);
                        if S == 2 {
                            o[r][q] = dpwssd(o[r][q], w1[q], a1);
                        } else {
                            e[r][q] = dpwssd(e[r][q], w1[q], a1);
                        }
                    }
                }
            }
            if FOLD {
                self.fold_super_i8::<R, P, S>(&e, &o, p0, b, &mut part, &mut acc);
                continue;
            }
            for q in 0..P {
                let s = &*self.scales.add((p0 + q - self.p_first) * nb + b);
                let (d, mn) = (_mm512_load_ps(s.d.as_ptr()), _mm512_load_ps(s.min.as_ptr()));
                for r in 0..R {
                    let at = (self.i0 + r) * nb + b;
                    let s = _mm512_set1_ps(*acts.scale.get_unchecked(at));
                    let sum = _mm512_set1_ps(*acts.sum.get_unchecked(at));
                    let dot = if S == 2 {
                        _mm512_add_epi32(e[r][q], o[r][q])
                    } else {
                        e[r][q]
                    };
                    acc[r][q] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, s), acc[r][q]);
                    acc[r][q] = _mm512_fmadd_ps(mn, sum, acc[r][q]);
                }
            }
        }
        store_tile(self.y, self.n, self.i0, p0, &acc);
    }

    /// `SuperI8`'s f32 steps for block `b` (`scalar::codes_gemm`): `part = fma(J, s, part)`
    /// and at the super-block's last block `acc = fma(part, d, acc)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    unsafe fn fold_super_i8<const R: usize, const P: usize, const S: usize>(
        &self,
        e: &[[__m512i; P]; R],
        o: &[[__m512i; P]; R],
        p0: usize,
        b: usize,
        part: &mut [[__m512; P]; R],
        acc: &mut [[__m512; P]; R],
    ) {
        let (acts, nb) = (self.acts, self.k / self.w.block);
        for r in 0..R {
            let s = _mm512_set1_ps(*acts.scale.get_unchecked((self.i0 + r) * nb + b));
            for q in 0..P {
                let dot = if S == 2 {
                    _mm512_add_epi32(e[r][q], o[r][q])
                } else {
                    e[r][q]
                };
                part[r][q] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, part[r][q]);
            }
        }
        let at = self.w.block_at(p0, nb, b);
        if at.j + 1 < self.w.scales.blocks_per_group() {
            return;
        }
        for q in 0..P {
            let hdr = self.w.block_at(p0 + q, nb, b).hdr;
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(self.w.data.as_ptr().add(hdr) as *const _));
            for r in 0..R {
                acc[r][q] = _mm512_fmadd_ps(part[r][q], d, acc[r][q]);
                part[r][q] = _mm512_setzero_ps();
            }
        }
    }
}
