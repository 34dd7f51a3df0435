//! Where models live on disk.

use std::path::PathBuf;

/// File name of the default model inside the models directory.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$AUTOGLM_HOME`, else the user's cache directory + `autoglm`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("AUTOGLM_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("autoglm")
}

/// Where `autoglm pull` puts the default model.
pub fn default_model_path() -> PathBuf {
    home().join("models").join(DEFAULT_MODEL_FILE)
}

/// For tests and benchmarks: `$AUTOGLM_MODEL`, else the pulled default model. Panics with
/// the command to run when it is missing, because every fidelity test needs the real model.
pub fn test_model_path() -> PathBuf {
    let p = std::env::var_os("AUTOGLM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(default_model_path);
    assert!(p.exists(), "model not found at {}: run `cargo run --release -p autoglm -- pull` (or scripts/test.sh) first", p.display());
    p
}

/// The repository's `testdata/` directory.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}
