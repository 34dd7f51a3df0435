//! Two query rows per task: in a prefill, consecutive rows of one sequence attend over the
//! same keys (the second over one more), so converting each K and V vector once for both
//! doubles the FMAs every conversion feeds (docs/benchmarks.md, "Long prompts").
// Register tiles are indexed [head][vector] on purpose: iterator chains obscure the tiling.
#![allow(clippy::needless_range_loop)]

use super::super::attention::{softcap, HeadGroup};
use super::{codes16, softmax_weights, Chunk, ScoreArgs};
use std::arch::x86_64::*;

/// How many positions ahead the V pass asks for a position's values.
pub(super) const V_AHEAD: usize = 8;

/// Most query values a pair of rows brings: two rows of four heads of 64, or of two of 128.
const PAIR_Q: usize = 512;

/// `attend_group` for two consecutive query rows of one sequence, the first over
/// positions `0..task.n_ctx - 1`, the second over `0..task.n_ctx`, `G` heads each on
/// `task.kv_head`: bitwise the two calls it replaces (the same FMA chains, roundings and
/// position order per row and head). Heads `0..G` of the pair are the first row's
/// (`qs[0]`, `out[0]`), `G..G2` the second's. Scores go `C` chunks at a time; the V pass
/// runs once per `HALF` vectors of the head, so that `G2 * HALF` accumulators stay in
/// registers.
///
/// # Safety
/// Requires avx512f; `task.check()` passed; `task.start == 0` and `task.n_ctx >= 2`;
/// `head_dim == 16 * NV`; each `qs` and `out` holds `G * head_dim` values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn attend_pair<
    const G: usize,
    const G2: usize,
    const NV: usize,
    const HALF: usize,
    const C: usize,
>(
    task: &HeadGroup,
    qs: [&[f32]; 2],
    scores: &mut Vec<f32>,
    out: [&mut [f32]; 2],
) {
    let l = task.kv.layout;
    let (hd, bs, n) = (l.head_dim, l.block_size, task.n_ctx);
    assert!(G2 == 2 * G && NV.is_multiple_of(HALF) && hd == 16 * NV && G2 * hd <= PAIR_Q);
    assert!(task.start == 0 && n >= 2);
    assert!(qs.iter().all(|q| q.len() >= G * hd) && out.iter().all(|o| o.len() >= G * hd));
    // The first row sees one position fewer.
    let len = |h: usize| if h < G { n - 1 } else { n };
    let mut q = [0f32; PAIR_Q];
    q[..G * hd].copy_from_slice(&qs[0][..G * hd]);
    q[G * hd..G2 * hd].copy_from_slice(&qs[1][..G * hd]);
    scores.clear();
    scores.resize(G2 * n, 0.0);
    let sp = scores.as_mut_ptr();
    let cpb = bs.div_ceil(16);
    let nchunks = n.div_ceil(bs) * cpb;
    let chunk = |j: usize| Chunk::of(task, j, cpb, n);
    // The first row's score at the second row's last position is formed and never read.
    let sc = ScoreArgs {
        k: task.kv.k.as_ptr(),
        k_scale: task.kv.k_scale.as_ptr(),
        bs,
        hd,
        q: q.as_ptr(),
        scale: task.scale,
        scores: sp,
        n,
    };
    let mut j = 0;
    while j + C <= nchunks {
        sc.chunks::<G2, C>(std::array::from_fn(|c| chunk(j + c)));
        j += C;
    }
    while j < nchunks {
        sc.chunks::<G2, 1>([chunk(j)]);
        j += 1;
    }
    // Softmax, then each position's weight `score * inv * v_scale` in place, the same
    // two roundings as `attend_group`.
    let vsp = task.kv.v_scale.as_ptr();
    for h in 0..G2 {
        let s = &mut scores[h * n..h * n + len(h)];
        if let Some(cap) = task.softcap {
            softcap(s, cap);
        }
        let inv = _mm512_set1_ps(softmax_weights(s));
        let w = s.as_mut_ptr();
        for bi in 0..len(h).div_ceil(bs) {
            let block = task.table[bi] as usize;
            let end = bs.min(len(h) - bi * bs);
            let mut c0 = 0;
            while c0 < end {
                let lanes = (end - c0).min(16);
                let m = ((1u32 << lanes) - 1) as u16;
                let vs = _mm512_maskz_loadu_ps(m, vsp.add(l.scale_index(block, task.kv_head, c0)));
                let at = w.add(bi * bs + c0);
                let a = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, at), inv), vs);
                _mm512_mask_storeu_ps(at, m, a);
                c0 += lanes;
            }
        }
    }
    let (vp, wp) = (task.kv.v.as_ptr(), scores.as_ptr());
    let last = n - 1;
    for part in 0..NV / HALF {
        let v_at = |p: usize| {
            let block = task.table[p / bs] as usize;
            vp.add(l.v_index(block, p % bs, task.kv_head) + 16 * HALF * part)
        };
        let mut o = [[_mm512_setzero_ps(); HALF]; G2];
        // The positions both rows see, in order, then the last, the second row's alone.
        for bi in 0..last.div_ceil(bs) {
            let end = bs.min(last - bi * bs);
            for slot in 0..end {
                let p = bi * bs + slot;
                // A head's V rows are consecutive within a block and, across blocks,
                // anywhere: ask for the one V_AHEAD positions on.
                if p + V_AHEAD < last {
                    let ahead = v_at(p + V_AHEAD) as *const i8;
                    for line in (0..32 * HALF).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.add(line));
                    }
                }
                let v = v_at(p);
                let mut vv = [_mm512_setzero_ps(); HALF];
                for c in 0..HALF {
                    vv[c] = codes16(v.add(16 * c));
                }
                for h in 0..G2 {
                    let a = _mm512_set1_ps(*wp.add(h * n + p));
                    for c in 0..HALF {
                        o[h][c] = _mm512_fmadd_ps(a, vv[c], o[h][c]);
                    }
                }
            }
        }
        let v = v_at(last);
        for c in 0..HALF {
            let vv = codes16(v.add(16 * c));
            for h in G..G2 {
                o[h][c] = _mm512_fmadd_ps(_mm512_set1_ps(*wp.add(h * n + last)), vv, o[h][c]);
            }
        }
        for h in 0..G2 {
            let row = out[h / G].as_mut_ptr().add((h % G) * hd + 16 * HALF * part);
            for c in 0..HALF {
                _mm512_storeu_ps(row.add(16 * c), o[h][c]);
            }
        }
    }
}
