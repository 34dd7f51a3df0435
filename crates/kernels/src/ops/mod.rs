//! Element-wise and attention kernels. Where a SIMD twin exists it reproduces the scalar
//! arithmetic exactly; the rest are written once, in forms the compiler vectorizes
//! without changing results.

mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod rope;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attention::{attention, AttnParams, AttnSeq, KvLayout, KvWriter, LayerKv, PagedKv};
pub use rope::{rope_table, yarn_corr_dims, RopeParams, RopeStyle};

use crate::{isa, Isa};

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * w`, with the mean accumulated in f64.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// [`rmsnorm`] in place, with the same arithmetic.
pub fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = (1.0 / (ss / x.len() as f64 + eps as f64).sqrt()) as f32;
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// RMSNorm of each `width`-long piece of `x` in place (Qwen 3's and Gemma 3's per-head
/// norms of Q and K).
pub fn rmsnorm_pieces(x: &mut [f32], width: usize, w: &[f32], eps: f32) {
    for piece in x.chunks_exact_mut(width) {
        rmsnorm_in_place(piece, w, eps);
    }
}

/// In place: `gate[i] = gelu(gate[i]) * up[i]`, GELU in its tanh form (Gemma's
/// `gelu_pytorch_tanh`; ggml's `gelu` is the same curve read from an f16 table).
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let inner = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
        *g = 0.5 * x * (1.0 + inner.tanh()) * u;
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
        Isa::Avx2 => unsafe { avx2::silu_mul(gate, up) },
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
        Isa::Avx2 => unsafe { avx2::exp_inplace(x) },
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

/// Scalar twins, for tests.
pub mod reference {
    pub use super::scalar::{axpy, dot, exp, exp_inplace, silu_mul};
}

#[cfg(test)]
mod tests;
