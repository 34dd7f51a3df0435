//! AVX2 twins of the attention reference and of `exp`: 8-lane vectors and 16 registers,
//! so the head group's accumulators are tiled more finely than the AVX-512 kernel's.
// Register tiles are indexed [head][vector] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::attention::{reduce8, softcap, HeadGroup};
use super::scalar::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P};
use std::arch::x86_64::*;

/// `scalar::exp` on 8 lanes, operation for operation.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp8(x: __m256) -> __m256 {
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_LO));
    // A NaN lane becomes EXP_HI, as `f32::min` makes it in the scalar twin.
    let x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    let mut p = _mm256_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)))
}

/// # Safety
/// Requires avx2 and fma.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_inplace(x: &mut [f32]) {
    let n = x.len() / 8 * 8;
    let p = x.as_mut_ptr();
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 <= n <= x.len().
        _mm256_storeu_ps(p.add(i), exp8(_mm256_loadu_ps(p.add(i))));
    }
    super::scalar::exp_inplace(&mut x[n..]);
}

/// # Safety
/// Requires avx2 and fma.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let len = gate.len().min(up.len());
    let n = len / 8 * 8;
    let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
    let one = _mm256_set1_ps(1.0);
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 <= n <= both lengths.
        let gv = _mm256_loadu_ps(g.add(i));
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        let s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g.add(i), _mm256_mul_ps(s, _mm256_loadu_ps(u.add(i))));
    }
    super::scalar::silu_mul(&mut gate[n..len], &up[n..len]);
}

/// Lanes `0..lanes` set, as `maskload`/`maskstore` read a mask.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lane_mask(lanes: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(lanes as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// 8 consecutive 16-bit codes as f32 (exact).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn codes8(p: *const i16) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm_loadu_si128(p as *const __m128i)))
}

/// Up to 8 consecutive slots of one block: K index of dimension 0, index of the first
/// slot's scale, position of the first slot, how many lanes are real positions.
#[derive(Clone, Copy)]
struct Chunk {
    k: usize,
    scale: usize,
    pos: usize,
    lanes: usize,
}

impl Chunk {
    /// Chunk `j` of the task's context (`cpb` chunks per block) for `n` positions.
    #[inline]
    fn of(task: &HeadGroup, j: usize, cpb: usize, n: usize) -> Self {
        let l = &task.kv.layout;
        let (bi, c0) = (j / cpb, (j % cpb) * 8);
        let pos = bi * l.block_size + c0;
        let block = task.table[bi] as usize;
        Chunk {
            k: l.k_index(block, task.kv_head, c0),
            scale: l.scale_index(block, task.kv_head, c0),
            pos,
            lanes: (l.block_size - c0).min(8).min(n.saturating_sub(pos)),
        }
    }
}

/// Attention of `G` query heads sharing one KV head, `head_dim = 8 * NV`: the bitwise
/// twin of `attention::reference_attend` (the same FMA chain per score over the head
/// dimension, the same softmax, and per output dimension the same sequential FMAs over
/// positions). Scores go `C` chunks of 8 positions at a time (`G * C` accumulators); the
/// V pass covers `DV` vectors of the head at a time (`G * DV` accumulators), reading each
/// V row once per pass for all `G` heads.
///
/// # Safety
/// Requires avx2 and fma; `task.check()` passed; `qs` and `out` hold `G * 8 * NV` values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn attend_group<
    const G: usize,
    const NV: usize,
    const C: usize,
    const DV: usize,
>(
    task: &HeadGroup,
    qs: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let l = task.kv.layout;
    let (hd, bs, n, s0) = (l.head_dim, l.block_size, task.n_ctx, task.start);
    assert!(hd == 8 * NV && NV.is_multiple_of(DV));
    assert!(qs.len() >= G * hd && out.len() >= G * hd && s0 < n);
    scores.clear();
    scores.resize(G * n, 0.0);
    let cpb = bs.div_ceil(8);
    let nchunks = n.div_ceil(bs) * cpb;
    let chunk = |j: usize| Chunk::of(task, j, cpb, n);
    let sc = Scores {
        k: task.kv.k.as_ptr(),
        k_scale: task.kv.k_scale.as_ptr(),
        bs,
        hd,
        q: qs.as_ptr(),
        scale: task.scale,
        out: scores.as_mut_ptr(),
        n,
    };
    // From the chunk holding the first visible position; scores before it are ignored.
    let mut j = (s0 / bs) * cpb + (s0 % bs) / 8;
    let blocks = n.div_ceil(bs);
    // Blocks below `fetched` have had their K requested: up to PREFETCH_BLOCKS past the
    // block being scored.
    let mut fetched = s0 / bs;
    while j < nchunks {
        while fetched < blocks && fetched <= j / cpb + PREFETCH_BLOCKS {
            prefetch_k(task, fetched);
            fetched += 1;
        }
        if j + C <= nchunks {
            sc.chunks::<G, C>(std::array::from_fn(|c| chunk(j + c)));
            j += C;
        } else {
            sc.chunks::<G, 1>([chunk(j)]);
            j += 1;
        }
    }
    for g in 0..G {
        let s = &mut scores[g * n + s0..(g + 1) * n];
        if let Some(cap) = task.softcap {
            softcap(s, cap);
        }
        let inv = softmax_weights(s);
        weigh(task, inv, s);
    }
    let (vp, sp) = (task.kv.v.as_ptr(), scores.as_ptr());
    // The V pass goes a tile of blocks at a time, every pass over `DV` vectors of the head
    // within the tile before the next tile: the tile's V rows come from memory once and
    // stay in L1 for the other passes, where passes over the whole context read all of V
    // once per pass. Each output lane is still one sequential FMA chain over positions,
    // paused between tiles in `acc`.
    let mut acc = [[_mm256_setzero_ps(); NV]; G];
    let b0 = s0 / bs;
    for bi in b0..blocks.min(b0 + V_AHEAD_BLOCKS) {
        prefetch_v(task, bi);
    }
    let row_bytes = hd * std::mem::size_of::<i16>();
    for t0 in (b0..blocks).step_by(V_TILE_BLOCKS) {
        let t1 = (t0 + V_TILE_BLOCKS).min(blocks);
        for piece in 0..NV / DV {
            let mut o: [[__m256; DV]; G] =
                std::array::from_fn(|g| std::array::from_fn(|c| acc[g][DV * piece + c]));
            for bi in t0..t1 {
                let block = task.table[bi] as usize;
                let first = if bi == b0 { s0 % bs } else { 0 };
                // The first pass requests the block V_AHEAD_BLOCKS ahead a row per
                // position: requested a tile at once (256 lines at 64 × 16), the lines
                // outnumbered the core's outstanding misses and the pass waited on memory
                // anyway.
                let ahead = (piece == 0 && bi + V_AHEAD_BLOCKS < blocks)
                    .then(|| task.table[bi + V_AHEAD_BLOCKS] as usize);
                for slot in first..bs.min(n - bi * bs) {
                    if let Some(b) = ahead {
                        let a = vp.add(l.v_index(b, slot, task.kv_head)) as *const i8;
                        for line in (0..row_bytes).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(a.add(line));
                        }
                    }
                    let p = bi * bs + slot;
                    let v = vp.add(l.v_index(block, slot, task.kv_head) + 8 * DV * piece);
                    let mut vv = [_mm256_setzero_ps(); DV];
                    for c in 0..DV {
                        vv[c] = codes8(v.add(8 * c));
                    }
                    for g in 0..G {
                        let a = _mm256_broadcast_ss(&*sp.add(g * n + p));
                        for c in 0..DV {
                            o[g][c] = _mm256_fmadd_ps(a, vv[c], o[g][c]);
                        }
                    }
                }
            }
            for g in 0..G {
                for c in 0..DV {
                    acc[g][DV * piece + c] = o[g][c];
                }
            }
        }
    }
    for g in 0..G {
        for c in 0..NV {
            _mm256_storeu_ps(out.as_mut_ptr().add(g * hd + 8 * c), acc[g][c]);
        }
    }
}

/// How many KV blocks ahead of the one being scored `attend_group` requests K. One
/// head's K in a block is `head_dim * block_size` codes (2 KiB for 64 × 16) and the other
/// heads' lie between one block and the next: the hardware prefetchers, which stop at
/// page boundaries and need a run of misses to start, left most of these loads waiting on
/// L3 or memory. Four rather than two since the scores stopped using masked stores
/// (`attention_speed` with SmolLM2's heads, 8,192 positions, two threads: 0.57–0.74
/// against 0.63–0.66 ms per layer, one thread 0.77–0.92 against 0.83–0.94).
const PREFETCH_BLOCKS: usize = 4;

/// Blocks per tile of the V pass: 16 KiB of one head's V rows at 64 × 16, which stay in
/// L1 for every pass over the tile.
const V_TILE_BLOCKS: usize = 8;

/// How many KV blocks ahead of the one being weighed the V pass requests V.
const V_AHEAD_BLOCKS: usize = 4;

/// Requests the task's K codes (and K scales) of context block `bi`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn prefetch_k(task: &HeadGroup, bi: usize) {
    let l = &task.kv.layout;
    let block = task.table[bi] as usize;
    let k = task.kv.k.as_ptr().add(l.k_index(block, task.kv_head, 0)) as *const i8;
    for line in (0..l.head_dim * l.block_size * 2).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(k.add(line));
    }
    let ks = task
        .kv
        .k_scale
        .as_ptr()
        .add(l.scale_index(block, task.kv_head, 0)) as *const i8;
    _mm_prefetch::<_MM_HINT_T0>(ks);
}

/// Requests the task's V rows in context block `bi`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn prefetch_v(task: &HeadGroup, bi: usize) {
    let l = &task.kv.layout;
    let block = task.table[bi] as usize;
    for slot in 0..l.block_size {
        let v = task.kv.v.as_ptr().add(l.v_index(block, slot, task.kv_head)) as *const i8;
        for line in (0..l.head_dim * 2).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(v.add(line));
        }
    }
}

/// `s = exp(s - max)` in place; returns `1 / Σ s` as `attention::reference_attend` computes
/// it (the max is exact in any order; the f64 sum uses `sum8`'s lanes and tree, position
/// `i` of `s` into lane `i % 8`).
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_weights(s: &mut [f32]) -> f32 {
    let n = s.len();
    let p = s.as_mut_ptr();
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        // The running max second: `max_ps` returns it where the score is NaN, which
        // `f32::max` in the reference skips too.
        vmax = _mm256_max_ps(_mm256_loadu_ps(p.add(i)), vmax);
    }
    let mut m = [0f32; 8];
    _mm256_storeu_ps(m.as_mut_ptr(), vmax);
    let max = s[full..]
        .iter()
        .chain(&m)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let vmax = _mm256_set1_ps(max);
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for i in (0..full).step_by(8) {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vmax));
        _mm256_storeu_ps(p.add(i), e);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
    }
    if full < n {
        let mask = lane_mask(n - full);
        let e = exp8(_mm256_sub_ps(_mm256_maskload_ps(p.add(full), mask), vmax));
        _mm256_maskstore_ps(p.add(full), mask, e);
        // Masked-off lanes add +0.0, which leaves every partial sum unchanged.
        let e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
    }
    let mut lanes = [0f64; 8];
    _mm256_storeu_pd(lanes.as_mut_ptr(), lo);
    _mm256_storeu_pd(lanes.as_mut_ptr().add(4), hi);
    (1.0 / reduce8(lanes)) as f32
}

/// Each softmax weight of `s` (positions `task.start..task.n_ctx`) times `inv` and its V
/// scale, in the reference's order: `(w * inv) * v_scale`.
#[target_feature(enable = "avx2,fma")]
unsafe fn weigh(task: &HeadGroup, inv: f32, s: &mut [f32]) {
    let l = &task.kv.layout;
    let (bs, s0, n) = (l.block_size, task.start, task.n_ctx);
    let (vs, sp, inv) = (
        task.kv.v_scale.as_ptr(),
        s.as_mut_ptr(),
        _mm256_set1_ps(inv),
    );
    for bi in s0 / bs..n.div_ceil(bs) {
        let block = task.table[bi] as usize;
        let first = if bi == s0 / bs { s0 % bs } else { 0 };
        let end = bs.min(n - bi * bs);
        let mut c0 = first;
        while c0 < end {
            let at = sp.add(bi * bs + c0 - s0);
            let scale = vs.add(l.scale_index(block, task.kv_head, c0));
            if end - c0 >= 8 {
                let w = _mm256_mul_ps(_mm256_loadu_ps(at), inv);
                _mm256_storeu_ps(at, _mm256_mul_ps(w, _mm256_loadu_ps(scale)));
            } else {
                let mask = lane_mask(end - c0);
                let w = _mm256_mul_ps(_mm256_maskload_ps(at, mask), inv);
                let scale = _mm256_maskload_ps(scale, mask);
                _mm256_maskstore_ps(at, mask, _mm256_mul_ps(w, scale));
            }
            c0 += 8;
        }
    }
}

/// Where a head group's scores come from and go.
struct Scores {
    k: *const i16,
    k_scale: *const f32,
    bs: usize,
    hd: usize,
    q: *const f32,
    scale: f32,
    out: *mut f32,
    n: usize,
}

impl Scores {
    /// Scores of `C` chunks for `G` heads: `G × C` independent FMA chains over the head
    /// dimension, each lane one position's sequential dot product.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn chunks<const G: usize, const C: usize>(&self, ch: [Chunk; C]) {
        let mut acc = [[_mm256_setzero_ps(); C]; G];
        for d in 0..self.hd {
            let mut kv = [_mm256_setzero_ps(); C];
            for c in 0..C {
                // Lanes past the chunk read other codes (the storage is padded for the
                // last block); the masked store below drops them.
                kv[c] = codes8(self.k.add(ch[c].k + d * self.bs));
            }
            for g in 0..G {
                let qb = _mm256_broadcast_ss(&*self.q.add(g * self.hd + d));
                for c in 0..C {
                    acc[g][c] = _mm256_fmadd_ps(qb, kv[c], acc[g][c]);
                }
            }
        }
        let scale = _mm256_set1_ps(self.scale);
        for c in 0..C {
            // Masked moves only for a chunk short of 8 positions: on Zen 3 a masked store
            // costs several times a plain one. With three per chunk and head (here, in
            // the softmax and in the weighing), attention over 1,024 cached positions of
            // SmolLM2's heads took 0.16 ms per layer against 0.09 without.
            if ch[c].lanes == 8 {
                let ks = _mm256_loadu_ps(self.k_scale.add(ch[c].scale));
                for g in 0..G {
                    _mm256_storeu_ps(
                        self.out.add(g * self.n + ch[c].pos),
                        _mm256_mul_ps(_mm256_mul_ps(acc[g][c], ks), scale),
                    );
                }
                continue;
            }
            let mask = lane_mask(ch[c].lanes);
            // The scales are not padded: a masked load reads no lane past the chunk.
            let ks = _mm256_maskload_ps(self.k_scale.add(ch[c].scale), mask);
            for g in 0..G {
                _mm256_maskstore_ps(
                    self.out.add(g * self.n + ch[c].pos),
                    mask,
                    _mm256_mul_ps(_mm256_mul_ps(acc[g][c], ks), scale),
                );
            }
        }
    }
}
