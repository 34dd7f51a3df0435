//! `autoglm synth`: random-weight GGUFs of real model shapes, for benchmarks.
//!
//! Speed does not depend on weight values, so a file with a real model's shapes, its
//! tokenizer and llama.cpp's choice of tensor types for a quantization mix measures what
//! that model would. Quantized blocks are written directly (random codes, scales sized so
//! activations stay in a normal range), which makes an 8B file in a minute without an f16
//! intermediate or `llama-quantize`.

use anyhow::{bail, Context, Result};
use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use half::f16;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Model shape: llama-3.2-1b, llama-3.2-3b, llama-3.1-8b.
    #[arg(long)]
    shape: String,
    /// Quantization mix, as llama-quantize names it: q4_k_m, q5_k_m, q6_k, q8_0, q4_0.
    #[arg(long, default_value = "q4_k_m")]
    quant: String,
    /// Keep only this many layers (small files for tests).
    #[arg(long)]
    layers: Option<usize>,
    /// A GGUF whose tokenizer (every `tokenizer.*` key) the model gets; its token count
    /// is the vocabulary size. The shapes above use Llama 3's: llama.cpp's
    /// `models/ggml-vocab-llama-bpe.gguf`.
    #[arg(long)]
    vocab: PathBuf,
    /// Output file (default: `$AUTOGLM_HOME/models/synth/SHAPE-QUANT[-LN].gguf`). An
    /// existing file is kept unless --force.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    force: bool,
}

struct Shape {
    embd: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
    tied: bool,
    rope_base: f32,
    /// Llama 3 rope scaling: factor, low/high frequency factors, original context.
    rope_scale: (f32, f32, f32, f32),
    context: u32,
}

fn shape(name: &str) -> Result<Shape> {
    Ok(match name {
        "llama-3.2-1b" => Shape {
            embd: 2048,
            layers: 16,
            heads: 32,
            kv_heads: 8,
            ff: 8192,
            tied: true,
            rope_base: 500_000.0,
            rope_scale: (32.0, 1.0, 4.0, 8192.0),
            context: 131_072,
        },
        "llama-3.2-3b" => Shape {
            embd: 3072,
            layers: 28,
            heads: 24,
            kv_heads: 8,
            ff: 8192,
            tied: true,
            rope_base: 500_000.0,
            rope_scale: (32.0, 1.0, 4.0, 8192.0),
            context: 131_072,
        },
        "llama-3.1-8b" => Shape {
            embd: 4096,
            layers: 32,
            heads: 32,
            kv_heads: 8,
            ff: 14336,
            tied: false,
            rope_base: 500_000.0,
            rope_scale: (8.0, 1.0, 4.0, 8192.0),
            context: 131_072,
        },
        other => bail!("unknown shape {other:?} (llama-3.2-1b, llama-3.2-3b, llama-3.1-8b)"),
    })
}

/// Tensor roles whose type llama.cpp's quantizer chooses separately.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Output,
    TokenEmbd,
    AttnV,
    FfnDown,
    Other,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// one between.
fn more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

/// The type llama-quantize gives a tensor of `role` in layer `i` of `n` (dense llama).
fn type_for(quant: &str, role: Role, tied: bool, i: usize, n: usize) -> Result<GgmlType> {
    let base = match quant {
        "q4_k_m" => GgmlType::Q4K,
        "q5_k_m" => GgmlType::Q5K,
        "q6_k" => GgmlType::Q6K,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        other => bail!("unknown quantization {other:?} (q4_k_m, q5_k_m, q6_k, q8_0, q4_0)"),
    };
    let output_like = role == Role::Output || (tied && role == Role::TokenEmbd);
    Ok(match role {
        _ if output_like && base != GgmlType::Q8_0 => GgmlType::Q6K,
        Role::AttnV | Role::FfnDown if matches!(quant, "q4_k_m" | "q5_k_m") && more_bits(i, n) => {
            GgmlType::Q6K
        }
        _ => base,
    })
}

/// xorshift64*, seeded per tensor so files are reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Self {
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Self(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// (elements, bytes) of one block.
fn block_of(ty: GgmlType) -> (usize, usize) {
    match ty {
        GgmlType::Q4_0 => (32, 18),
        GgmlType::Q8_0 => (32, 34),
        GgmlType::Q4K => (256, 144),
        GgmlType::Q5K => (256, 176),
        GgmlType::Q6K => (256, 210),
        _ => unreachable!("synth writes only the block types type_for returns"),
    }
}

/// Random blocks of `ty` for a `rows × cols` matrix whose weights have a typical size of
/// about `1/sqrt(cols)`: codes are uniform, scales fixed per tensor so that
/// `code * scale - min` is centred.
fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: &str) -> Vec<u8> {
    let (be, bb) = block_of(ty);
    let n_blocks = rows * cols / be;
    let mut out = vec![0u8; n_blocks * bb];
    let mut rng = Rng::new(seed);
    rng.fill(&mut out);
    let amp = 1.0 / (cols as f32).sqrt();
    let put = |b: &mut [u8], at: usize, v: f32| {
        b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes())
    };
    for b in out.chunks_exact_mut(bb) {
        match ty {
            // value = d * (q - 8), q uniform in 0..16
            GgmlType::Q4_0 => put(b, 0, amp / 4.6),
            // value = d * q, q uniform in -128..128
            GgmlType::Q8_0 => put(b, 0, amp / 74.0),
            // value = d * sc * q - dmin * m, sc and m uniform 6-bit, q uniform 4- or 5-bit
            GgmlType::Q4K | GgmlType::Q5K => {
                let half_q = if ty == GgmlType::Q4K { 7.5 } else { 15.5 };
                let d = amp / (31.5 * half_q);
                put(b, 0, d);
                put(b, 2, d * half_q);
            }
            // value = d * sc * (q - 32), sc a signed byte, q uniform 6-bit
            GgmlType::Q6K => put(b, 208, amp / (64.0 * 18.0)),
            _ => unreachable!(),
        }
    }
    out
}

/// Llama 3's per-frequency rope divisors (`rope_freqs.weight`), as its conversion computes.
fn llama3_rope_factors(n_rot: usize, base: f32, s: (f32, f32, f32, f32)) -> Vec<f32> {
    let (factor, low, high, orig) = s;
    let (low_wavelen, high_wavelen) = (orig / low, orig / high);
    (0..n_rot / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(2.0 * i as f32 / n_rot as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn run(a: Args) -> Result<()> {
    let mut s = shape(&a.shape)?;
    if let Some(l) = a.layers {
        if l == 0 || l > s.layers {
            bail!("--layers {l}: the shape has 1..={} layers", s.layers);
        }
        s.layers = l;
    }
    let out = match a.out {
        Some(p) => p,
        None => {
            let layers = a.layers.map(|l| format!("-L{l}")).unwrap_or_default();
            crate::settings::env()
                .home
                .join("models/synth")
                .join(format!("{}-{}{layers}.gguf", a.shape, a.quant))
        }
    };
    if out.exists() && !a.force {
        println!("{}", out.display());
        return Ok(());
    }
    let vocab = GgufFile::open(&a.vocab).with_context(|| format!("vocab {}", a.vocab.display()))?;
    let n_vocab = vocab.get_array("tokenizer.ggml.tokens")?.len();
    let head_dim = s.embd / s.heads;
    let kv_dim = head_dim * s.kv_heads;
    let mut w = GgufWriter::new();
    let arch = "llama";
    w.meta("general.architecture", Value::String(arch.into()));
    w.meta(
        "general.name",
        Value::String(format!(
            "synthetic {} {} (random weights)",
            a.shape, a.quant
        )),
    );
    let file_type = match a.quant.as_str() {
        "q4_0" => 2,
        "q8_0" => 7,
        "q4_k_m" => 15,
        "q5_k_m" => 17,
        "q6_k" => 18,
        other => bail!("unknown quantization {other:?} (q4_k_m, q5_k_m, q6_k, q8_0, q4_0)"),
    };
    w.meta("general.file_type", Value::U32(file_type));
    let k = |key: &str| format!("{arch}.{key}");
    w.meta(&k("context_length"), Value::U32(s.context));
    w.meta(&k("embedding_length"), Value::U32(s.embd as u32));
    w.meta(&k("block_count"), Value::U32(s.layers as u32));
    w.meta(&k("feed_forward_length"), Value::U32(s.ff as u32));
    w.meta(&k("attention.head_count"), Value::U32(s.heads as u32));
    w.meta(&k("attention.head_count_kv"), Value::U32(s.kv_heads as u32));
    w.meta(&k("rope.dimension_count"), Value::U32(head_dim as u32));
    w.meta(&k("rope.freq_base"), Value::F32(s.rope_base));
    w.meta(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5));
    w.meta(&k("vocab_size"), Value::U32(n_vocab as u32));
    for (key, v) in vocab.metadata() {
        if key.starts_with("tokenizer.") {
            w.meta(key, v.clone());
        }
    }
    let n = s.layers;
    let quant = a.quant.as_str();
    let tied = s.tied;
    let mat = |w: &mut GgufWriter, name: String, role: Role, i: usize, rows: usize, cols: usize| {
        let ty = type_for(quant, role, tied, i, n)?;
        let (be, bb) = block_of(ty);
        let len = rows * cols / be * bb;
        let seed = name.clone();
        w.tensor_lazy(&name, &[cols as u64, rows as u64], ty, len, move || {
            random_matrix(ty, rows, cols, &seed)
        });
        anyhow::Ok(())
    };
    mat(
        &mut w,
        "token_embd.weight".into(),
        Role::TokenEmbd,
        0,
        n_vocab,
        s.embd,
    )?;
    let ones = |len: usize| f32_bytes(&vec![1.0; len]);
    w.tensor(
        "output_norm.weight",
        &[s.embd as u64],
        GgmlType::F32,
        ones(s.embd),
    );
    if !s.tied {
        mat(
            &mut w,
            "output.weight".into(),
            Role::Output,
            0,
            n_vocab,
            s.embd,
        )?;
    }
    let factors = llama3_rope_factors(head_dim, s.rope_base, s.rope_scale);
    w.tensor(
        "rope_freqs.weight",
        &[factors.len() as u64],
        GgmlType::F32,
        f32_bytes(&factors),
    );
    for i in 0..n {
        let b = |t: &str| format!("blk.{i}.{t}.weight");
        w.tensor(
            &b("attn_norm"),
            &[s.embd as u64],
            GgmlType::F32,
            ones(s.embd),
        );
        w.tensor(
            &b("ffn_norm"),
            &[s.embd as u64],
            GgmlType::F32,
            ones(s.embd),
        );
        mat(&mut w, b("attn_q"), Role::Other, i, s.embd, s.embd)?;
        mat(&mut w, b("attn_k"), Role::Other, i, kv_dim, s.embd)?;
        mat(&mut w, b("attn_v"), Role::AttnV, i, kv_dim, s.embd)?;
        mat(&mut w, b("attn_output"), Role::Other, i, s.embd, s.embd)?;
        mat(&mut w, b("ffn_gate"), Role::Other, i, s.ff, s.embd)?;
        mat(&mut w, b("ffn_up"), Role::Other, i, s.ff, s.embd)?;
        mat(&mut w, b("ffn_down"), Role::FfnDown, i, s.embd, s.ff)?;
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("gguf.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut bw = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_to(&mut bw)?;
    std::io::Write::flush(&mut bw)?;
    drop(bw);
    std::fs::rename(&tmp, &out)?;
    println!("{}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_types_follow_llama_quantize() {
        // Llama-3.1-8B's 32 layers: llama.cpp gives attn_v and ffn_down Q6_K in layers
        // 0-3, 28-31 and every third one from 6.
        let q6: Vec<usize> = (0..32)
            .filter(|&i| type_for("q4_k_m", Role::FfnDown, false, i, 32).unwrap() == GgmlType::Q6K)
            .collect();
        assert_eq!(
            q6,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        for (quant, role, tied, want) in [
            ("q4_k_m", Role::Other, false, GgmlType::Q4K),
            ("q4_k_m", Role::TokenEmbd, false, GgmlType::Q4K),
            ("q4_k_m", Role::TokenEmbd, true, GgmlType::Q6K),
            ("q8_0", Role::Output, false, GgmlType::Q8_0),
        ] {
            assert_eq!(type_for(quant, role, tied, 6, 32).unwrap(), want, "{quant}");
        }
        assert!(type_for("q3_k_xl", Role::Other, false, 0, 32).is_err());
    }
}
