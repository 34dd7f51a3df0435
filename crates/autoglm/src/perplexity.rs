use crate::load::load;
use anyhow::{bail, Context, Result};
use model::{log_softmax_top, KvCache, SeqInput, WantLogits};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text file to score.
    #[arg(long)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arith: crate::load::Arithmetic,
    /// Print one JSON object at the end.
    #[arg(long)]
    json: bool,
}

/// llama-perplexity's method: the file (one trailing newline stripped) is tokenized
/// without special-token parsing, cut into non-overlapping chunks of `ctx` tokens, each
/// run from an empty cache, and only the second half of each chunk is scored.
pub fn run(a: Args) -> Result<()> {
    let l = load(a.model, a.threads, a.arith)?;
    let mut text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    if text.ends_with('\n') {
        text.pop();
    }
    let tokens = l.tokenizer.encode(&text, true, false)?;
    let n_ctx = a.ctx;
    if n_ctx < 4 {
        bail!("--ctx must be at least 4");
    }
    let n_chunks = tokens.len() / n_ctx;
    if n_chunks == 0 {
        bail!("{} tokens is less than one chunk of {n_ctx}", tokens.len());
    }
    eprintln!("{} tokens, {n_chunks} chunks of {n_ctx}", tokens.len());
    let first = n_ctx / 2;
    let mut kv = KvCache::new(&l.model.config, n_ctx, 16);
    let table: Vec<u32> = (0..kv.n_blocks as u32).collect();
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let start = std::time::Instant::now();
    let mut per_chunk = Vec::new();
    for c in 0..n_chunks {
        let chunk = &tokens[c * n_ctx..(c + 1) * n_ctx];
        let out = l.model.forward(
            &mut kv,
            &[SeqInput {
                tokens: chunk,
                start_pos: 0,
                block_table: &table,
                logits: WantLogits::From(first),
            }],
        )?;
        let mut chunk_nll = 0f64;
        for i in first..n_ctx - 1 {
            let row = out.row(i - first);
            let (lse, _) = log_softmax_top(row, 0);
            let v = lse - row[chunk[i + 1] as usize] as f64;
            chunk_nll += v;
            nll += v;
            nll2 += v * v;
            count += 1;
        }
        per_chunk.push(chunk_nll / (n_ctx - 1 - first) as f64);
        eprint!("[{}]{:.4},", c + 1, (nll / count as f64).exp());
    }
    eprintln!();
    let mean = nll / count as f64;
    let ppl = mean.exp();
    // As llama-perplexity: the error of the mean NLL, propagated to PPL.
    let var = (nll2 / count as f64 - mean * mean).max(0.0) / (count as f64 - 1.0).max(1.0);
    let stderr = ppl * var.sqrt();
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            json!({"ppl": ppl, "ppl_stderr": stderr, "mean_nll": mean, "n_tokens": tokens.len(), "n_chunks": n_chunks, "n_ctx": n_ctx, "scored": count, "chunk_mean_nll": per_chunk, "seconds": secs})
        );
    } else {
        println!("Final estimate: PPL = {ppl:.4} +/- {stderr:.5}  ({count} tokens scored in {secs:.1} s)");
    }
    Ok(())
}
