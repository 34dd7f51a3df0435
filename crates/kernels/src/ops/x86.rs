//! AVX-512 twins of `scalar.rs`.
#![allow(clippy::needless_range_loop)]

use super::scalar::{EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, P};
use std::arch::x86_64::*;

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
/// # Safety
/// Requires avx512f; `head_dim` is a multiple of 16 and at most 256; every offset that
/// `offset(p)` returns for `p < n_ctx` has `head_dim` valid elements in `k` and `v`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn attend_head(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_ctx: usize,
    offset: &dyn Fn(usize) -> usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = q.len();
    let nv = hd / 16;
    assert!(hd.is_multiple_of(16) && nv <= 16 && out.len() >= hd);
    let mut qv = [_mm512_setzero_ps(); 16];
    for c in 0..nv {
        qv[c] = _mm512_loadu_ps(q.as_ptr().add(c * 16));
    }
    scores.clear();
    scores.reserve(n_ctx);
    let mut max = f32::NEG_INFINITY;
    for p in 0..n_ctx {
        let off = offset(p);
        assert!(off + hd <= k.len());
        let kp = k.as_ptr().add(off);
        let mut acc = _mm512_setzero_ps();
        for c in 0..nv {
            acc = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kp.add(c * 16)), acc);
        }
        let s = reduce16(acc) * scale;
        max = max.max(s);
        scores.push(s);
    }
    for s in scores.iter_mut() {
        *s -= max;
    }
    exp_inplace(scores);
    let sum: f64 = scores.iter().map(|&s| s as f64).sum();
    let inv = (1.0 / sum) as f32;
    let mut o = [_mm512_setzero_ps(); 16];
    for (p, &w) in scores.iter().enumerate() {
        let off = offset(p);
        assert!(off + hd <= v.len());
        let vp = v.as_ptr().add(off);
        let a = _mm512_set1_ps(w * inv);
        for c in 0..nv {
            o[c] = _mm512_fmadd_ps(a, _mm512_loadu_ps(vp.add(c * 16)), o[c]);
        }
    }
    for c in 0..nv {
        _mm512_storeu_ps(out.as_mut_ptr().add(c * 16), o[c]);
    }
}
