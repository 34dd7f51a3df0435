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

/// How quantized weights multiply, for every command that runs the model.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Arithmetic {
    /// Bits of the activation codes quantized weights multiply with: 16, closest to the
    /// exact model, or 8, llama.cpp's arithmetic: half the integer multiplies (faster
    /// prefill), 256 times coarser activation codes.
    #[arg(long, default_value_t = 16, value_parser = parse_bits)]
    pub activation_bits: u8,
}

fn parse_bits(s: &str) -> std::result::Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("{s:?}: 8 or 16")),
    }
}

pub fn load(arg: Option<PathBuf>, threads: Option<usize>, arith: Arithmetic) -> Result<Loaded> {
    let path = model_path(arg)?;
    let f = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // The tokenizer first: building its tables frees as much again as they keep (the
    // token and merge strings, the tables' growth), and given back before the weights
    // load, that transient stays under the weights' peak instead of on top of it.
    let tokenizer =
        Tokenizer::from_gguf(&f).with_context(|| format!("tokenizer of {}", path.display()))?;
    model::heap::return_free_pages();
    let pool = Arc::new(ThreadPool::new(crate::settings::threads(threads)));
    let mut model =
        Model::from_gguf(&f, pool).with_context(|| format!("loading {}", path.display()))?;
    model.set_activation_bits(arith.activation_bits);
    Ok(Loaded { model, tokenizer })
}
