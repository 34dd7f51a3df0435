//! AVX-512 twins of `scalar.rs`.
#![allow(clippy::needless_range_loop)]

use super::attention::HeadGroup;
use super::scalar::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P};
use std::arch::x86_64::*;

mod pair;
pub(crate) use pair::attend_pair;

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn exp16(x: __m512) -> __m512 {
    let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(EXP_LO));
    let x = _mm512_min_ps(x, _mm512_set1_ps(EXP_HI));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    let mut p = _mm512_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(n),
        _mm512_set1_epi32(127),
    ));
    let out = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    _mm512_maskz_mov_ps(!under, out)
}

/// # Safety
/// Requires avx512f.
#[target_feature(enable = "avx512f")]
pub unsafe fn exp_inplace(x: &mut [f32]) {
    let n = x.len() / 16 * 16;
    let p = x.as_mut_ptr();
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 <= n <= x.len().
        _mm512_storeu_ps(p.add(i), exp16(_mm512_loadu_ps(p.add(i))));
    }
    super::scalar::exp_inplace(&mut x[n..]);
}

/// # Safety
/// Requires avx512f.
#[target_feature(enable = "avx512f")]
pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let len = gate.len().min(up.len());
    let n = len / 16 * 16;
    let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
    let one = _mm512_set1_ps(1.0);
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 <= n <= both lengths.
        let gv = _mm512_loadu_ps(g.add(i));
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_storeu_ps(g.add(i), _mm512_mul_ps(s, _mm512_loadu_ps(u.add(i))));
    }
    super::scalar::silu_mul(&mut gate[n..len], &up[n..len]);
}

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

/// # Safety
/// Requires avx512f.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let full = len / 16;
    let mut acc = _mm512_setzero_ps();
    for i in 0..full {
        // SAFETY: (i+1)*16 <= len.
        acc = _mm512_fmadd_ps(
            _mm512_loadu_ps(a.as_ptr().add(i * 16)),
            _mm512_loadu_ps(b.as_ptr().add(i * 16)),
            acc,
        );
    }
    let rem = len - full * 16;
    if rem > 0 {
        let m: __mmask16 = ((1u32 << rem) - 1) as u16;
        let av = _mm512_maskz_loadu_ps(m, a.as_ptr().add(full * 16));
        let bv = _mm512_maskz_loadu_ps(m, b.as_ptr().add(full * 16));
        acc = _mm512_fmadd_ps(av, bv, acc);
    }
    reduce16(acc)
}

/// # Safety
/// Requires avx512f.
#[target_feature(enable = "avx512f")]
pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let len = x.len().min(y.len());
    let n = len / 16 * 16;
    let av = _mm512_set1_ps(a);
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 <= n <= both lengths.
        let yv = _mm512_fmadd_ps(
            av,
            _mm512_loadu_ps(x.as_ptr().add(i)),
            _mm512_loadu_ps(y.as_ptr().add(i)),
        );
        _mm512_storeu_ps(y.as_mut_ptr().add(i), yv);
    }
    super::scalar::axpy(a, &x[n..len], &mut y[n..len]);
}

/// Attention of one query head over its context: the same arithmetic as the generic
/// path in `attention.rs` (16-lane dot products, `exp`, f64 sum, `fma` accumulation of
/// V), with every per-key step inlined.
///
/// `G` query heads sharing one KV head, `head_dim = 16 * NV`: the bitwise twin of
/// `attention::reference_attend`.
///
/// # Safety
/// Requires avx512f; `task.check()` passed; `qs` and `out` hold `G * 16 * NV` values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn attend_group<const G: usize, const NV: usize>(
    task: &HeadGroup,
    qs: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let l = task.kv.layout;
    let (hd, bs, n, s0) = (l.head_dim, l.block_size, task.n_ctx, task.start);
    assert!(hd == 16 * NV && qs.len() >= G * hd && out.len() >= G * hd && s0 < n);
    scores.clear();
    scores.resize(G * n, 0.0);
    let sp = scores.as_mut_ptr();
    let cpb = bs.div_ceil(16);
    let nchunks = n.div_ceil(bs) * cpb;
    let chunk = |j: usize| Chunk::of(task, j, cpb, n);
    let sc = ScoreArgs {
        k: task.kv.k.as_ptr(),
        k_scale: task.kv.k_scale.as_ptr(),
        bs,
        hd,
        q: qs.as_ptr(),
        scale: task.scale,
        scores: sp,
        n,
    };
    // From the chunk holding the first visible position; scores before it are ignored.
    let mut j = (s0 / bs) * cpb + (s0 % bs) / 16;
    while j + 4 <= nchunks {
        sc.chunks::<G, 4>([chunk(j), chunk(j + 1), chunk(j + 2), chunk(j + 3)]);
        j += 4;
    }
    while j < nchunks {
        sc.chunks::<G, 1>([chunk(j)]);
        j += 1;
    }
    let mut inv = [0f32; G];
    for g in 0..G {
        let s = &mut scores[g * n + s0..(g + 1) * n];
        if let Some(cap) = task.softcap {
            super::attention::softcap(s, cap);
        }
        inv[g] = softmax_weights(s);
    }
    let (vp, vsp, sp) = (
        task.kv.v.as_ptr(),
        task.kv.v_scale.as_ptr(),
        scores.as_ptr(),
    );
    let mut o = [[_mm512_setzero_ps(); NV]; G];
    // Each position's weight `score * inv * v_scale` for 16 slots at once (the same two
    // roundings as the scalar twin), so that the loop over slots is only the V codes'
    // conversion and one FMA per head and 16 dimensions, its weight broadcast from memory.
    let mut weights = [[0f32; 16]; G];
    for bi in s0 / bs..n.div_ceil(bs) {
        let block = task.table[bi] as usize;
        let first = if bi == s0 / bs { s0 % bs } else { 0 };
        let end = bs.min(n - bi * bs);
        let mut c0 = first;
        while c0 < end {
            let lanes = (end - c0).min(16);
            let m = ((1u32 << lanes) - 1) as u16;
            let vs = _mm512_maskz_loadu_ps(m, vsp.add(l.scale_index(block, task.kv_head, c0)));
            for g in 0..G {
                let s = _mm512_maskz_loadu_ps(m, sp.add(g * n + bi * bs + c0));
                let a = _mm512_mul_ps(_mm512_mul_ps(s, _mm512_set1_ps(inv[g])), vs);
                _mm512_storeu_ps(weights[g].as_mut_ptr(), a);
            }
            for j in 0..lanes {
                // As in `attend_pair`: a head's V rows are consecutive within a block and,
                // across blocks, anywhere.
                let ahead = bi * bs + c0 + j + pair::V_AHEAD;
                if ahead < n {
                    let b = task.table[ahead / bs] as usize;
                    let at = vp.add(l.v_index(b, ahead % bs, task.kv_head)) as *const i8;
                    for line in (0..32 * NV).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(at.add(line));
                    }
                }
                let v = vp.add(l.v_index(block, c0 + j, task.kv_head));
                let mut vv = [_mm512_setzero_ps(); NV];
                for c in 0..NV {
                    vv[c] = codes16(v.add(16 * c));
                }
                for g in 0..G {
                    let a = _mm512_set1_ps(*weights[g].get_unchecked(j));
                    for c in 0..NV {
                        o[g][c] = _mm512_fmadd_ps(a, vv[c], o[g][c]);
                    }
                }
            }
            c0 += lanes;
        }
    }
    for g in 0..G {
        for c in 0..NV {
            _mm512_storeu_ps(out.as_mut_ptr().add(g * hd + 16 * c), o[g][c]);
        }
    }
}

/// `s = exp(s - max)` in place; returns `1 / Σ s` as `attention::reference_attend` computes
/// it (the max is exact in any order; the f64 sum uses `sum8`'s lanes and tree).
#[target_feature(enable = "avx512f")]
unsafe fn softmax_weights(s: &mut [f32]) -> f32 {
    let n = s.len();
    let p = s.as_mut_ptr();
    let mask = |i: usize| ((1u32 << (n - i).min(16)) - 1) as u16;
    let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..n).step_by(16) {
        vmax = _mm512_mask_max_ps(
            vmax,
            mask(i),
            vmax,
            _mm512_maskz_loadu_ps(mask(i), p.add(i)),
        );
    }
    let max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    let mut lanes = _mm512_setzero_pd();
    for i in (0..n).step_by(16) {
        let m = mask(i);
        let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), max));
        _mm512_mask_storeu_ps(p.add(i), m, e);
        // Masked-off lanes add +0.0, which leaves every partial sum unchanged.
        let e = _mm512_maskz_mov_ps(m, e);
        lanes = _mm512_add_pd(lanes, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e)));
        lanes = _mm512_add_pd(lanes, _mm512_cvtps_pd(hi));
    }
    let mut l = [0f64; 8];
    _mm512_storeu_pd(l.as_mut_ptr(), lanes);
    (1.0 / super::attention::reduce8(l)) as f32
}

/// 16 consecutive 16-bit codes as f32 (exact).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn codes16(p: *const i16) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm256_loadu_si256(
        p as *const __m256i,
    )))
}

/// Up to 16 consecutive slots of one block: K index of dimension 0, index of the first
/// slot's scale, position of the first slot, and which lanes are real positions.
#[derive(Clone, Copy)]
struct Chunk {
    k: usize,
    scale: usize,
    pos: usize,
    mask: u16,
}

impl Chunk {
    /// Chunk `j` of the task's context (`cpb` chunks per block) for `n` positions.
    #[inline]
    fn of(task: &HeadGroup, j: usize, cpb: usize, n: usize) -> Self {
        let l = &task.kv.layout;
        let (bi, c0) = (j / cpb, (j % cpb) * 16);
        let pos = bi * l.block_size + c0;
        let lanes = (l.block_size - c0).min(16).min(n.saturating_sub(pos));
        let block = task.table[bi] as usize;
        Chunk {
            k: l.k_index(block, task.kv_head, c0),
            scale: l.scale_index(block, task.kv_head, c0),
            pos,
            mask: ((1u32 << lanes) - 1) as u16,
        }
    }
}

struct ScoreArgs {
    k: *const i16,
    k_scale: *const f32,
    bs: usize,
    hd: usize,
    q: *const f32,
    scale: f32,
    scores: *mut f32,
    n: usize,
}

impl ScoreArgs {
    /// Scores of `C` chunks for `G` heads: `G × C` independent FMA chains over the head
    /// dimension, each lane one position's sequential dot product.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn chunks<const G: usize, const C: usize>(&self, ch: [Chunk; C]) {
        let mut acc = [[_mm512_setzero_ps(); C]; G];
        for d in 0..self.hd {
            let mut kv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                // Lanes past the chunk read other codes (the storage is padded for the
                // last block); the masked store below drops them.
                kv[c] = codes16(self.k.add(ch[c].k + d * self.bs));
            }
            for g in 0..G {
                let qb = _mm512_set1_ps(*self.q.add(g * self.hd + d));
                for c in 0..C {
                    acc[g][c] = _mm512_fmadd_ps(qb, kv[c], acc[g][c]);
                }
            }
        }
        let scale = _mm512_set1_ps(self.scale);
        let mut ks = [_mm512_setzero_ps(); C];
        for c in 0..C {
            ks[c] = _mm512_maskz_loadu_ps(ch[c].mask, self.k_scale.add(ch[c].scale));
        }
        for g in 0..G {
            for c in 0..C {
                _mm512_mask_storeu_ps(
                    self.scores.add(g * self.n + ch[c].pos),
                    ch[c].mask,
                    _mm512_mul_ps(_mm512_mul_ps(acc[g][c], ks[c]), scale),
                );
            }
        }
    }
}
