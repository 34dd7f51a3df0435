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
pub use pool::ThreadPool;
pub use quant::QuantFormat;

/// Which instruction set the dispatching kernels use on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx512,
}

/// Detected once; `AUTOGLM_FORCE_SCALAR=1` forces the reference path (for comparison runs).
pub fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("AUTOGLM_FORCE_SCALAR").is_ok_and(|v| v == "1") {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
        }
        Isa::Scalar
    })
}
