//! Resolving `--model` (default: the pulled default model) and loading it.

use anyhow::{Context, Result};
use gguf::GgufFile;
use kernels::ThreadPool;
use model::Model;
use std::path::PathBuf;
use std::sync::Arc;
use tokenizer::Tokenizer;

pub fn model_path(arg: Option<PathBuf>) -> Result<PathBuf> {
    match arg {
        Some(p) => Ok(p),
        None => crate::pull::pull_default(),
    }
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
}

pub fn load(arg: Option<PathBuf>, threads: Option<usize>) -> Result<Loaded> {
    let path = model_path(arg)?;
    let f = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let pool = Arc::new(ThreadPool::new(crate::settings::threads(threads)));
    let model =
        Model::from_gguf(&f, pool).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer =
        Tokenizer::from_gguf(&f).with_context(|| format!("tokenizer of {}", path.display()))?;
    Ok(Loaded { model, tokenizer })
}
