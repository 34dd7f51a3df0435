//! Where models live on disk. Nothing here reads the environment: the binary (and the
//! tests) pass in how to look a variable up, so a library's behaviour never depends on
//! hidden process state.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// File name of the default model inside the models directory.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Looks up an environment-style variable (`std::env::var_os` in the binary).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// `$AUTOGLM_HOME`, else the user's cache directory + `autoglm`.
pub fn home(var: Lookup) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    if let Some(h) = set("AUTOGLM_HOME") {
        return PathBuf::from(h);
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("autoglm")
}

/// Where `autoglm pull` puts the default model under `home`.
pub fn default_model_path(home: &Path) -> PathBuf {
    home.join("models").join(DEFAULT_MODEL_FILE)
}

/// For tests and benchmarks: `$AUTOGLM_MODEL`, else the pulled default model. Panics with
/// the command to run when it is missing, because every fidelity test needs the real model.
pub fn test_model_path(var: Lookup) -> PathBuf {
    let p = var("AUTOGLM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_model_path(&home(var)));
    assert!(p.exists(), "model not found at {}: run `cargo run --release -p autoglm -- pull` (or scripts/test.sh) first", p.display());
    p
}

/// The repository's `testdata/` directory.
pub fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// The llama.cpp release whose vocab test vectors and chat templates the tests use.
pub const LLAMACPP_VECTORS: &str = "llama-cpp-python-0.3.36";

/// For tests: llama.cpp's `models/` directory (`ggml-vocab-*.gguf` with their `.inp`/`.out`
/// test vectors, `templates/*.jinja`), as `scripts/fetch_llamacpp_models.sh` unpacks it
/// from the llama-cpp-python sdist: `$AUTOGLM_LLAMACPP_MODELS`, else under `home`.
pub fn llamacpp_models_dir(var: Lookup) -> PathBuf {
    let p = var("AUTOGLM_LLAMACPP_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(var).join(LLAMACPP_VECTORS).join("models"));
    assert!(
        p.join("ggml-vocab-llama-bpe.gguf").exists(),
        "llama.cpp's models/ not found at {}: run scripts/fetch_llamacpp_models.sh (scripts/test.sh does)",
        p.display()
    );
    p
}
