//! `autoglm synth`: random-weight GGUFs of real model shapes (see `model::synth`), for
//! benchmarks (`llama-3.2-1b`, `llama-3.2-3b`, `llama-3.1-8b` in a llama-quantize mix)
//! and for the numerics tests against llama.cpp (`test-*`, one per architecture).

use anyhow::{anyhow, Context, Result};
use gguf::GgufFile;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model shape: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, or a test-* shape
    /// (test-llama3, test-llama-linear, test-llama-yarn, test-mistral, test-qwen2,
    /// test-qwen3, test-glm4, test-phi3, test-gemma2, test-gemma3).
    #[arg(long)]
    shape: String,
    /// Quantization mix of the benchmark shapes, as llama-quantize names it: q4_k_m
    /// (default), q5_k_m, q6_k, q8_0, q4_0. The test shapes fix their own types.
    #[arg(long)]
    quant: Option<String>,
    /// Keep only this many layers (small files for tests).
    #[arg(long)]
    layers: Option<usize>,
    /// A GGUF whose tokenizer (every `tokenizer.*` key) the model gets; its token count
    /// is the vocabulary size. Each shape names the llama.cpp vocab it is meant for
    /// (`models/ggml-vocab-<name>.gguf`): llama-bpe for the Llama 3 shapes.
    #[arg(long)]
    vocab: PathBuf,
    /// Output file (default: `$AUTOGLM_HOME/models/synth/SHAPE-QUANT[-LN].gguf`). An
    /// existing file is kept unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut spec = model::synth::shape(&a.shape, a.quant.as_deref()).map_err(|e| anyhow!(e))?;
    if let Some(l) = a.layers {
        if l == 0 || l > spec.n_layers {
            return Err(anyhow!(
                "--layers {l}: the shape has 1..={} layers",
                spec.n_layers
            ));
        }
        spec.n_layers = l;
    }
    let out = match a.out {
        Some(p) => p,
        None => {
            let layers = a.layers.map(|l| format!("-L{l}")).unwrap_or_default();
            let quant = a
                .quant
                .as_deref()
                .unwrap_or(if a.shape.starts_with("test-") {
                    "mixed"
                } else {
                    "q4_k_m"
                });
            crate::settings::env()
                .home
                .join("models/synth")
                .join(format!("{}-{quant}{layers}.gguf", a.shape))
        }
    };
    if out.exists() && !a.force {
        println!("{}", out.display());
        return Ok(());
    }
    let vocab = GgufFile::open(&a.vocab).with_context(|| format!("vocab {}", a.vocab.display()))?;
    model::synth::write(&spec, &vocab, &out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(())
}
