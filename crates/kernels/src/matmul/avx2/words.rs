//! The AVX2 word kernel: for batches of enough rows with 16-bit activation codes (and with
//! 8-bit ones against Q6_K and Q8_0, whose byte tiles pay extra: `wide_rows`), a task
//! widens its panels' codes to 16-bit words once and multiplies them with `vpmaddwd`
//! against the activation codes as words (`QuantActs::wide`), bitwise the byte kernel's
//! results.
//!
//! Both kernels take one multiply per 16 multiply-adds (`vpmaddubsw` covers 32 byte
//! products, but 16-bit codes need two, high and low byte), but the byte kernel also
//! unpacks the codes in every row tile and widens each row's two 16-bit sums per block:
//! with 3-row tiles that was a fifth of its vector instructions. Words also need half the
//! accumulators, so a tile takes six rows (12 sums, two code vectors and a broadcast fill
//! 15 of the 16 registers).
// Register tiles are indexed [row][half] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::super::acts::{wide_len, QuantActs, WIDE_TILE};
use super::super::pack::{CodeBits, CodePanels, ScaleBits, PANEL};
use super::super::shared_out::SharedOut;
use super::{
    block_codes, decode_super6, finish_block, reserve_scales, store_tile, PanelScales, BYTES, H,
    HI1, HI2, MIN, NIB4, OFFSET, SCALES, SUPER6, SUPER_I8,
};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// The most bytes of widened codes a task keeps at once: a panel of rows of 2048 is
/// 64 KiB of words, so two of them stay in L2 beside a row tile's activations while
/// every row tile passes over them.
const WIDE_BYTES: usize = 128 << 10;

/// Panels widened at a time for rows of `k` (at least one).
fn chunk_panels(k: usize) -> usize {
    (WIDE_BYTES / (k * PANEL * 2)).max(1)
}

thread_local! {
    /// The codes of the panels a task multiplies as words, widened once for all its row
    /// tiles: per panel, block and pair `v` of codes, one vector per half, lane `r`
    /// holding codes `2v` and `2v + 1` of the half's row `r` (for `SuperI8`,
    /// `(code - 32) * sc`: within ±4096).
    static WORDS: RefCell<Vec<__m256i>> = const { RefCell::new(Vec::new()) };
}

/// Panels `p0..p1` times all `m` rows of `acts`, whose `wide` codes must be filled.
///
/// # Safety
/// Requires avx2, fma and f16c; shapes as `CodePanels::check_job` checks them.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn codes_panels(
    w: &CodePanels,
    k: usize,
    n: usize,
    p0: usize,
    p1: usize,
    acts: &QuantActs,
    m: usize,
    y: &SharedOut,
) {
    // The tiles read `acts.wide` unchecked, a row tile at a time.
    assert!(acts.has_wide && acts.wide.len() >= wide_len(m, k));
    let nb = k / w.block;
    let chunk = chunk_panels(k);
    let mut words = WORDS.with(|cell| cell.take());
    let mut scales = SCALES.with(|cell| cell.take());
    for c0 in (p0..p1).step_by(chunk) {
        let c1 = (c0 + chunk).min(p1);
        // Widening first: it streams the panels in with prefetches, so the scale headers
        // are in cache when decoded.
        widen_codes(w, nb, c0, c1, &mut words);
        if w.scales == ScaleBits::Super6 {
            reserve_scales(&mut scales, (c1 - c0) * nb);
            for p in c0..c1 {
                decode_super6(w, p, nb, &mut scales[(p - c0) * nb..]);
            }
        }
        // Row tiles outside, panels inside: a tile's activations stay in L1 while the
        // chunk's words pass over them from L2.
        for i0 in (0..m).step_by(WIDE_TILE) {
            let rows = (m - i0).min(WIDE_TILE);
            for p in c0..c1 {
                let t = WideTile {
                    w,
                    k,
                    n,
                    acts,
                    i0,
                    p,
                    words: words.as_ptr().add((p - c0) * nb * (w.block / 2) * H),
                    scales: scales.as_ptr().add((p - c0) * nb),
                };
                macro_rules! by_rows {
                    ($sb:expr, $block:expr) => {
                        match rows {
                            6 => t.run::<6, { $sb }, { $block }>(y),
                            5 => t.run::<5, { $sb }, { $block }>(y),
                            4 => t.run::<4, { $sb }, { $block }>(y),
                            3 => t.run::<3, { $sb }, { $block }>(y),
                            2 => t.run::<2, { $sb }, { $block }>(y),
                            _ => t.run::<1, { $sb }, { $block }>(y),
                        }
                    };
                }
                match (w.scales, w.block) {
                    (ScaleBits::ScaleMin, 32) => by_rows!(MIN, 32),
                    (ScaleBits::ScaleOffset(_), 32) => by_rows!(OFFSET, 32),
                    (ScaleBits::Super6, 32) => by_rows!(SUPER6, 32),
                    (ScaleBits::SuperI8, 16) => by_rows!(SUPER_I8, 16),
                    (sb, block) => unreachable!("no word kernel for {sb:?} in blocks of {block}"),
                }
            }
        }
    }
    WORDS.with(|cell| cell.replace(words));
    SCALES.with(|cell| cell.replace(scales));
}

/// Fills `out` with the codes of blocks `0..nb` of panels `p0..p1` as words.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_codes(w: &CodePanels, nb: usize, p0: usize, p1: usize, out: &mut Vec<__m256i>) {
    use CodeBits as C;
    match (w.codes, w.scales, w.block) {
        (C::Nib4Hi2, ScaleBits::SuperI8, 16) => widen_codes_as::<HI2, 16, true>(w, nb, p0, p1, out),
        (C::Nib4, _, 32) => widen_codes_as::<NIB4, 32, false>(w, nb, p0, p1, out),
        (C::Nib4Hi1, _, 32) => widen_codes_as::<HI1, 32, false>(w, nb, p0, p1, out),
        // Words hold every byte code whole, the wide ones (above 127) included.
        (C::Bytes, _, 32) => widen_codes_as::<BYTES, 32, false>(w, nb, p0, p1, out),
        (cb, sb, block) => {
            unreachable!("no word kernel for {cb:?} codes with {sb:?} scales in blocks of {block}")
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_codes_as<const CB: u8, const BLOCK: usize, const FOLD: bool>(
    w: &CodePanels,
    nb: usize,
    p0: usize,
    p1: usize,
    out: &mut Vec<__m256i>,
) {
    let pairs = BLOCK / 2;
    let needed = (p1 - p0) * nb * pairs * H;
    // Every entry below is overwritten: grow the buffer, never refill it.
    if out.len() < needed {
        out.resize(needed, _mm256_setzero_si256());
    }
    // Lane `r` of a byte vector holds four consecutive codes; these pick the first two
    // (then the last two) into the lane's two words, zero-extended.
    let z = -128i8;
    let first = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, z, 1, z, 4, z, 5, z, 8, z, 9, z, 12, z, 13, z,
    ));
    let last = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        2, z, 3, z, 6, z, 7, z, 10, z, 11, z, 14, z, 15, z,
    ));
    let high_at = w.high_bits_at();
    let dst = out.as_mut_ptr();
    let data_end = w.data.len();
    // This is where the weights come in from memory (the tiles read the words): keep the
    // next PREFETCH_AHEAD_AVX2 bytes requested, as the byte tiles do.
    let mut fetched = w.block_at(p0, nb, 0).hdr;
    let mut codes = [_mm256_setzero_si256(); 16];
    for p in p0..p1 {
        for b in 0..nb {
            let at = w.block_at(p, nb, b);
            let want =
                (at.codes + w.code_bytes() + super::super::PREFETCH_AHEAD_AVX2).min(data_end);
            while fetched < want {
                _mm_prefetch::<_MM_HINT_T0>(w.data.as_ptr().add(fetched) as *const i8);
                fetched += 64;
            }
            let d = dst.add(((p - p0) * nb + b) * pairs * H);
            for h in 0..H {
                // Each of the half's lanes' `sc` in both of its words.
                let sc = if FOLD {
                    let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        w.data.as_ptr().add(at.hdr + 32 + 16 * at.j + 8 * h) as *const _,
                    ));
                    _mm256_or_si256(
                        _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)),
                        _mm256_slli_epi32::<16>(sc),
                    )
                } else {
                    _mm256_setzero_si256()
                };
                let words = |v: __m256i| {
                    if FOLD {
                        _mm256_mullo_epi16(_mm256_sub_epi16(v, _mm256_set1_epi16(32)), sc)
                    } else {
                        v
                    }
                };
                let base = w.data.as_ptr().add(at.codes + 32 * h);
                block_codes::<CB, BLOCK>(base, base.add(high_at), &mut codes);
                // Byte vector `t` holds codes 4t..4t + 4 of every lane: pairs 2t, 2t + 1.
                for t in 0..BLOCK / 4 {
                    let (lo, hi) = (
                        _mm256_shuffle_epi8(codes[t], first),
                        _mm256_shuffle_epi8(codes[t], last),
                    );
                    _mm256_store_si256(d.add(2 * t * H + h), words(lo));
                    _mm256_store_si256(d.add((2 * t + 1) * H + h), words(hi));
                }
            }
        }
    }
}

/// A row tile (up to `WIDE_TILE` rows from `i0`, a multiple of it) against panel `p`'s
/// widened codes.
struct WideTile<'a> {
    w: &'a CodePanels,
    k: usize,
    n: usize,
    acts: &'a QuantActs,
    i0: usize,
    p: usize,
    /// Panel `p`'s first word (`WORDS`).
    words: *const __m256i,
    /// Panel `p`'s `decode_super6`, for `Super6` matrices.
    scales: *const PanelScales,
}

impl WideTile<'_> {
    /// Per block, row and half the exact `I = Σ code * c` (for `SuperI8`, `J`: the words
    /// hold `(code - 32) * sc`) in one `vpmaddwd` and one add per pair of codes, then the
    /// byte kernel's f32 steps.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run<const R: usize, const SB: u8, const BLOCK: usize>(&self, y: &SharedOut) {
        let (w, k, acts) = (self.w, self.k, self.acts);
        let nb = k / BLOCK;
        let pairs = BLOCK / 2;
        // This row tile's codes: per pair of codes, WIDE_TILE rows' pairs side by side.
        let x = acts.wide.as_ptr().add(self.i0 * k);
        let bcast = |p: *const i16| _mm256_set1_epi32((p as *const i32).read_unaligned());
        let offset = super::super::x86::scale_offset(w);
        let mut acc = [[_mm256_setzero_ps(); H]; R];
        let mut part = [[_mm256_setzero_ps(); H]; R];
        for b in 0..nb {
            let words = self.words.add(b * pairs * H);
            let xb = x.add(b * BLOCK * WIDE_TILE);
            let mut dot = [[_mm256_setzero_si256(); H]; R];
            for v in 0..pairs {
                let c = [
                    _mm256_load_si256(words.add(v * H)),
                    _mm256_load_si256(words.add(v * H + 1)),
                ];
                for r in 0..R {
                    let a = bcast(xb.add((v * WIDE_TILE + r) * 2));
                    for h in 0..H {
                        dot[r][h] = _mm256_add_epi32(dot[r][h], _mm256_madd_epi16(c[h], a));
                    }
                }
            }
            finish_block::<R, SB, true>(
                w,
                acts,
                self.i0,
                (nb, b),
                w.block_at(self.p, nb, b),
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
