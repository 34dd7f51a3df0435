//! Element-wise and attention kernels. Where a SIMD twin exists it reproduces the scalar
//! arithmetic exactly; the rest are written once, in forms the compiler vectorizes
//! without changing results.

mod attention;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attention::{attention, AttnSeq, KvLayout, KvWriter, LayerKv, PagedKv};

use crate::{isa, Isa};

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * w`, with the mean accumulated in f64.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// Rotary embedding on interleaved pairs (ggml's "normal" rope): pair `(2i, 2i+1)` of each
/// head is rotated by `pos * theta_i`; `cos_sin` holds `(cos, sin)` for each pair.
pub fn rope_pairs(x: &mut [f32], head_dim: usize, cos_sin: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cos_sin) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}

/// Rotary embedding on split halves (GPT-NeoX style): element `i` pairs with `i + d/2`.
pub fn rope_halves(x: &mut [f32], head_dim: usize, cos_sin: &[(f32, f32)]) {
    let h = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(c, s)) in cos_sin.iter().enumerate().take(h) {
            let (a, b) = (head[i], head[i + h]);
            head[i] = a * c - b * s;
            head[i + h] = a * s + b * c;
        }
    }
}

/// `(cos, sin)` of `pos * base^(-2i/dims)` for `i < dims/2`, computed in f64; `freq_scale`
/// is linear RoPE scaling (1.0 for none), `factors` per-pair divisors (rope_freqs tensor).
pub fn rope_table(
    pos: usize,
    dims: usize,
    base: f64,
    freq_scale: f64,
    factors: Option<&[f32]>,
    out: &mut Vec<(f32, f32)>,
) {
    out.clear();
    for i in 0..dims / 2 {
        let mut theta = pos as f64 * freq_scale * base.powf(-2.0 * i as f64 / dims as f64);
        if let Some(f) = factors {
            theta /= f[i] as f64;
        }
        out.push((theta.cos() as f32, theta.sin() as f32));
    }
}

/// In place: `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    exp_neg_into(gate, up);
}

fn exp_neg_into(gate: &mut [f32], up: &[f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::silu_mul(gate, up) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2 and fma were detected at run time.
        Isa::Avx2 => unsafe { avx2_silu_mul(gate, up) },
        _ => scalar::silu_mul(gate, up),
    }
}

/// `Σ a[i]*b[i]` with the 16-lane FMA chain and reduction tree of the matmul.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::dot(a, b) },
        _ => scalar::dot(a, b),
    }
}

/// In place `x[i] = exp(x[i])`.
pub fn exp_inplace(x: &mut [f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::exp_inplace(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx2 and fma were detected at run time.
        Isa::Avx2 => unsafe { avx2_exp_inplace(x) },
        _ => scalar::exp_inplace(x),
    }
}

/// `y[i] = fma(a, x[i], y[i])`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: avx512f was detected at run time.
        Isa::Avx512 => unsafe { x86::axpy(a, x, y) },
        _ => scalar::axpy(a, x, y),
    }
}

// The scalar bodies compiled for AVX2 and FMA: `mul_add` becomes one instruction instead
// of a libm call, and the loops vectorize; the arithmetic is the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_silu_mul(gate: &mut [f32], up: &[f32]) {
    scalar::silu_mul(gate, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_exp_inplace(x: &mut [f32]) {
    scalar::exp_inplace(x)
}

/// Scalar twins, for tests.
pub mod reference {
    pub use super::scalar::{axpy, dot, exp, exp_inplace, silu_mul};
}

#[cfg(test)]
mod tests;
