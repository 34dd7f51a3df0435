use crate::load::load;
use anyhow::{bail, Result};
use model::sampling_argmax as argmax;
use model::{KvCache, SeqInput, WantLogits};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt length for the prefill measurement (pp in llama-bench).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Sequences prefilled together in the prefill measurement, each of --prompt-tokens
    /// (a server's burst of new requests is many short prompts in one step).
    #[arg(long, default_value_t = 1)]
    prefill_seqs: usize,
    /// Tokens each sequence already holds in the KV cache before the timed prefill
    /// (llama-bench's `-d`): prefill speed deep into a long context.
    #[arg(long, default_value_t = 0)]
    prefill_depth: usize,
    /// Tokens generated per sequence in each decode measurement (tg).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Context each sequence holds before decoding starts (npp in llama-batched-bench).
    #[arg(long, default_value_t = 128)]
    decode_context: usize,
    /// Batch sizes for decode, comma-separated.
    #[arg(long, default_value = "1,4,16,32", value_delimiter = ',')]
    batch: Vec<usize>,
    /// Instead of the decode measurements, decode --gen-tokens tokens (one sequence) right
    /// after each timed prefill, from the cache it filled: decode speed at depth + prompt
    /// without filling a long context a second time (llama-batched-bench's S_TG at npl 1).
    /// Takes only --batch 1.
    #[arg(long)]
    decode_after_prefill: bool,
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    arith: crate::load::Arithmetic,
    #[arg(long)]
    json: bool,
}

/// Tokens per forward when filling decode contexts (the server's default step budget).
const CONTEXT_STEP_TOKENS: usize = 512;

/// Deterministic, distinct pseudo-random prompts of ordinary tokens.
fn prompt(seed: usize, len: usize, vocab: usize) -> Vec<u32> {
    let mut s = 0x9E37_79B9u64.wrapping_mul(seed as u64 + 1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (100 + s % (vocab as u64 - 100)) as u32
        })
        .collect()
}

/// A cache with room for `seqs` sequences of `len` tokens, and each one's block table.
fn private_caches(cfg: &model::Config, seqs: usize, len: usize) -> (KvCache, Vec<Vec<u32>>) {
    let blocks_per = len.div_ceil(16) as u32;
    let kv = KvCache::new(cfg, seqs * blocks_per as usize * 16, 16);
    let tables = (0..seqs as u32)
        .map(|s| (s * blocks_per..(s + 1) * blocks_per).collect())
        .collect();
    (kv, tables)
}

/// Each prompt from position 0 in its own blocks, last logits wanted.
fn whole_prompts<'a>(prompts: &'a [Vec<u32>], tables: &'a [Vec<u32>]) -> Vec<SeqInput<'a>> {
    prompts
        .iter()
        .zip(tables)
        .map(|(p, t)| SeqInput {
            tokens: p,
            start_pos: 0,
            block_table: t,
            logits: WantLogits::Last,
        })
        .collect()
}

/// Of the time the pool's threads spent between two readings, the share spent spinning:
/// waiting for the next parallel region or for the others to finish one (the
/// synchronisation and serial sections of a step).
fn wait_share(before: kernels::PoolTimes, after: kernels::PoolTimes) -> f64 {
    let busy = (after.busy - before.busy).as_secs_f64();
    let spin = (after.spin - before.spin).as_secs_f64();
    if busy + spin > 0.0 {
        spin / (busy + spin)
    } else {
        0.0
    }
}

/// `steps` greedy decode steps of the sequences whose next tokens are `next`, each at
/// `context` tokens when it starts: the seconds they took and the pool's waiting share.
fn decode_steps(
    m: &model::Model,
    kv: &mut KvCache,
    tables: &[Vec<u32>],
    context: usize,
    steps: usize,
    mut next: Vec<u32>,
) -> Result<(f64, f64)> {
    let (t, before) = (Instant::now(), m.pool.times());
    for step in 0..steps {
        let toks: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let inputs: Vec<SeqInput> = toks
            .iter()
            .zip(tables)
            .map(|(tk, t)| SeqInput {
                tokens: tk,
                start_pos: context + step,
                block_table: t,
                logits: WantLogits::Last,
            })
            .collect();
        let out = m.forward(kv, &inputs)?;
        next = (0..next.len())
            .map(|s| out.last_for(s).map(argmax).unwrap_or(0))
            .collect();
    }
    Ok((
        t.elapsed().as_secs_f64(),
        wait_share(before, m.pool.times()),
    ))
}

fn stats(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd =
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt();
    (median, sd)
}

pub fn run(a: Args) -> Result<()> {
    if a.repetitions == 0 || a.batch.contains(&0) || a.prefill_seqs == 0 || a.prompt_tokens == 0 {
        bail!("repetitions, batch sizes, prefill sequences and prompt tokens must be positive");
    }
    if a.decode_after_prefill && (a.batch != [1] || a.prefill_seqs != 1) {
        bail!("--decode-after-prefill decodes the one prefilled sequence: it takes --batch 1 and --prefill-seqs 1");
    }
    let path = crate::load::model_path(a.model)?;
    let file_bytes = std::fs::metadata(&path)?.len();
    let started = std::time::Instant::now();
    let l = load(Some(path), a.threads, a.arith)?;
    let load_s = started.elapsed().as_secs_f64();
    let m = &l.model;
    let loaded = crate::mem::rss();
    let vocab = m.config.vocab_size;
    let threads = m.pool.threads();
    let isa = format!("{:?}", kernels::isa());

    // Warm-up: page in the weights and spin up the pool.
    let (mut kv, table) = m.private_cache(64);
    m.forward(
        &mut kv,
        &[SeqInput {
            tokens: &prompt(999, 32, vocab),
            start_pos: 0,
            block_table: &table,
            logits: WantLogits::Last,
        }],
    )?;

    let mut pp = Vec::new();
    let depth = a.prefill_depth;
    let after = if a.decode_after_prefill {
        a.gen_tokens
    } else {
        0
    };
    let (mut kv, tables) =
        private_caches(&m.config, a.prefill_seqs, depth + a.prompt_tokens + after);
    let (mut after_runs, mut after_waits) = (Vec::new(), Vec::new());
    for r in 0..a.repetitions {
        if depth > 0 {
            let context: Vec<Vec<u32>> = (0..a.prefill_seqs)
                .map(|s| prompt(5000 + s, depth, vocab))
                .collect();
            m.forward(&mut kv, &whole_prompts(&context, &tables))?;
        }
        let prompts: Vec<Vec<u32>> = (0..a.prefill_seqs)
            .map(|s| prompt(r * 1000 + s, a.prompt_tokens, vocab))
            .collect();
        let mut inputs = whole_prompts(&prompts, &tables);
        for i in &mut inputs {
            i.start_pos = depth;
        }
        let t = Instant::now();
        let out = m.forward(&mut kv, &inputs)?;
        pp.push((a.prefill_seqs * a.prompt_tokens) as f64 / t.elapsed().as_secs_f64());
        if a.decode_after_prefill {
            let first = out.last_for(0).map(argmax).unwrap_or(0);
            let (secs, wait) = decode_steps(
                m,
                &mut kv,
                &tables,
                depth + a.prompt_tokens,
                a.gen_tokens,
                vec![first],
            )?;
            after_runs.push(a.gen_tokens as f64 / secs);
            after_waits.push(wait);
        }
    }
    let (pp_med, pp_sd) = stats(&pp);
    if !a.json {
        println!(
            "model weights streamed per token: {:.1} MiB, threads {threads}, kernels {isa}, \
             loaded in {load_s:.2} s",
            m.weight_bytes() as f64 / (1 << 20) as f64
        );
        let seqs = if a.prefill_seqs > 1 {
            format!(" x {} sequences", a.prefill_seqs)
        } else {
            String::new()
        };
        let at = if depth > 0 {
            format!(" at depth {depth}")
        } else {
            String::new()
        };
        println!(
            "prefill pp{}{seqs}{at}: {pp_med:.1} tok/s (sd {pp_sd:.1}, runs {:?})",
            a.prompt_tokens,
            pp.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
    }

    let mut decode = Vec::new();
    let mut kv_peak = kv.bytes();
    drop(kv);
    if a.decode_after_prefill {
        let (med, sd) = stats(&after_runs);
        if !a.json {
            println!(
                "decode batch  1 at context {}: {med:.1} tok/s (sd {sd:.1}, runs {:?}; pool threads waiting {:.0}% of their time)",
                depth + a.prompt_tokens,
                after_runs.iter().map(|v| v.round()).collect::<Vec<_>>(),
                100.0 * stats(&after_waits).0
            );
        }
        decode.push(json!({"batch": 1, "context": depth + a.prompt_tokens, "tokens_per_s": med,
                           "stddev": sd, "runs": after_runs, "pool_wait_share": stats(&after_waits).0}));
    }
    let measured_batches: &[usize] = if a.decode_after_prefill {
        &[]
    } else {
        &a.batch
    };
    for &b in measured_batches {
        let (mut kv, tables) = private_caches(&m.config, b, a.decode_context + a.gen_tokens);
        kv_peak = kv_peak.max(kv.bytes());
        let (mut runs, mut waits) = (Vec::new(), Vec::new());
        for r in 0..a.repetitions {
            let prompts: Vec<Vec<u32>> = (0..b)
                .map(|s| prompt(1000 + r * 100 + s, a.decode_context, vocab))
                .collect();
            // The contexts go in as a server's scheduler would send them, about 512 tokens
            // per step, so peak memory is a serving step's, not one 32 x context batch's.
            let group = (CONTEXT_STEP_TOKENS / a.decode_context.max(1)).max(1);
            let mut next = Vec::with_capacity(b);
            for (ps, ts) in prompts.chunks(group).zip(tables.chunks(group)) {
                let out = m.forward(&mut kv, &whole_prompts(ps, ts))?;
                next.extend((0..ps.len()).map(|s| out.last_for(s).map(argmax).unwrap_or(0)));
            }
            let (secs, wait) =
                decode_steps(m, &mut kv, &tables, a.decode_context, a.gen_tokens, next)?;
            runs.push((b * a.gen_tokens) as f64 / secs);
            waits.push(wait);
        }
        let (med, sd) = stats(&runs);
        if !a.json {
            println!(
                "decode batch {b:>2}: {med:.1} tok/s aggregate (sd {sd:.1}, runs {:?}; pool threads waiting {:.0}% of their time)",
                runs.iter().map(|v| v.round()).collect::<Vec<_>>(),
                100.0 * stats(&waits).0
            );
        }
        decode.push(
            json!({"batch": b, "tokens_per_s": med, "stddev": sd, "runs": runs,
                           "pool_wait_share": stats(&waits).0}),
        );
    }
    let end = crate::mem::rss();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let memory = match (&loaded, &end) {
        (Some(l), Some(e)) => {
            if !a.json {
                println!(
                    "memory: file {:.1} MiB, RSS after load {:.1} MiB, peak {:.1} MiB \
                     (largest KV cache {:.1} MiB; peak / (file + KV) = {:.3})",
                    mib(file_bytes),
                    mib(l.now),
                    mib(e.peak),
                    mib(kv_peak as u64),
                    e.peak as f64 / (file_bytes + kv_peak as u64) as f64
                );
            }
            json!({"file_bytes": file_bytes, "rss_after_load_bytes": l.now,
                   "rss_peak_bytes": e.peak, "rss_end_bytes": e.now, "kv_peak_bytes": kv_peak})
        }
        _ => json!(null),
    };
    if a.json {
        println!(
            "{}",
            json!({
                "memory": memory,
                "prefill_tokens_per_s": pp_med,
                "prefill": {"prompt_tokens": a.prompt_tokens, "depth": depth, "sequences": a.prefill_seqs, "stddev": pp_sd, "runs": pp},
                "decode": decode,
                "gen_tokens": a.gen_tokens,
                "decode_context": if a.decode_after_prefill { depth + a.prompt_tokens } else { a.decode_context },
                "threads": threads,
                "isa": isa,
                "weight_bytes_per_token": m.weight_bytes(),
                "load_seconds": load_s,
            })
        );
    }
    Ok(())
}
