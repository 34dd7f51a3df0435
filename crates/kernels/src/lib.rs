//! Compute kernels: quantized weight formats, a batch-invariant matrix multiply, the
//! element-wise ops of a transformer layer, and the persistent thread pool.
//!
//! Every SIMD kernel has a scalar twin that defines its exact arithmetic: the SIMD path
//! performs the same f32 operations in the same order, so results are bitwise equal and
//! do not depend on how many rows share a batch.

mod error;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;

pub use error::{Error, Result};
pub use matmul::{matmul, PackedMatrix};
pub use pool::{PoolTimes, ThreadPool};
pub use quant::QuantFormat;

/// Which instruction set the dispatching kernels use on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2, FMA and F16C: the integer matmul, the activation quantizer, attention,
    /// `exp` and SiLU have AVX2 twins; the other kernels run their scalar reference
    /// compiled for AVX2.
    Avx2,
    Avx512,
}

static ISA_CAP: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();

/// Caps the instruction set the kernels may use (for comparison runs, and to test the
/// lower paths on a bigger machine). Call before the first kernel runs; returns false
/// (and changes nothing) once the choice is made.
pub fn set_isa_cap(cap: Isa) -> bool {
    ISA_CAP.set(cap).is_ok() && ISA.get().is_none()
}

static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();

/// The best path this CPU supports within the cap, decided once.
pub fn isa() -> Isa {
    *ISA.get_or_init(|| {
        let cap = *ISA_CAP.get_or_init(|| Isa::Avx512);
        if cap == Isa::Scalar {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if cap == Isa::Avx512 && avx2 && is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}
