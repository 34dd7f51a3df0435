//! The one place the binary reads its environment. Library crates read none: what they
//! need (the kernel ISA cap, the thread count, the cache directory) arrives from here as
//! plain values.

use kernels::Isa;
use std::path::PathBuf;

pub struct Env {
    /// `$AUTOGLM_HOME`, else `$XDG_CACHE_HOME/autoglm` or `~/.cache/autoglm`.
    pub home: PathBuf,
    /// `$AUTOGLM_THREADS`: compute threads when `--threads` is not given.
    pub threads: Option<usize>,
    /// `$AUTOGLM_ISA=scalar|avx2` (or `AUTOGLM_FORCE_SCALAR=1`): the highest kernel path.
    pub isa_cap: Isa,
    /// `$OTEL_SERVICE_NAME`: the service the traces name.
    pub otel_service_name: Option<String>,
    /// `$OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export before more are dropped.
    /// (The SDK reads the other `OTEL_BSP_*` variables itself.)
    pub otel_queue: Option<usize>,
}

pub fn env() -> &'static Env {
    static ENV: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let var = |k: &str| std::env::var(k).ok();
        let isa_cap = if var("AUTOGLM_FORCE_SCALAR").as_deref() == Some("1") {
            Isa::Scalar
        } else {
            match var("AUTOGLM_ISA").as_deref() {
                Some("scalar") => Isa::Scalar,
                Some("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            }
        };
        Env {
            home: model::paths::home(&|k| std::env::var_os(k)),
            threads: var("AUTOGLM_THREADS")
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0),
            isa_cap,
            otel_service_name: var("OTEL_SERVICE_NAME").filter(|v| !v.is_empty()),
            otel_queue: var("OTEL_BSP_MAX_QUEUE_SIZE")
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0),
        }
    })
}

/// Compute threads: the flag, else `$AUTOGLM_THREADS`, else every core.
pub fn threads(flag: Option<usize>) -> usize {
    flag.or(env().threads)
        .unwrap_or_else(kernels::ThreadPool::default_threads)
}
