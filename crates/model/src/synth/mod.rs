//! Random-weight GGUFs of real model layouts: speed does not depend on weight values,
//! and llama.cpp computing on the same file is an oracle for an architecture's math.
//!
//! A [`Spec`] names the architecture, its dimensions and which optional tensors its
//! layers carry; [`write`] lays them out exactly as llama.cpp's converter names and
//! shapes them, with a real tokenizer copied from a vocab GGUF. Quantized blocks are
//! written directly (random codes, scales sized so activations stay in a normal range):
//! no f16 intermediate, no `llama-quantize`, and the same bytes on every machine.

mod random;
mod shapes;

pub use random::Rng;
pub use shapes::{shape, SHAPES};

use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use random::{bytes_of, f32_bytes, random_matrix, random_vector};

/// Which tensor a weight type is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnV,
    AttnOutput,
    FfnGateUp,
    FfnDown,
}

/// Per-pair rope factors the file carries.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeFactorTensors {
    None,
    /// `rope_freqs.weight` (Llama 3.1).
    Freqs(Vec<f32>),
    /// `rope_factors_long.weight`, `rope_factors_short.weight` (Phi-3).
    LongShort(Vec<f32>, Vec<f32>),
}

/// One model to write.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `general.architecture`.
    pub arch: &'static str,
    pub name: String,
    pub n_embd: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub n_ff: usize,
    pub context: u32,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub tied: bool,
    /// `attn_qkv` instead of `attn_q`/`attn_k`/`attn_v`.
    pub fused_qkv: bool,
    pub qkv_bias: bool,
    /// `ffn_up` holding gate and up rows instead of `ffn_gate` + `ffn_up`.
    pub fused_gate_up: bool,
    pub qk_norm: bool,
    pub post_norms: bool,
    pub rope_factors: RopeFactorTensors,
    /// Further `{arch}.*` metadata (rope scaling, windows, soft caps), key without the
    /// architecture prefix.
    pub meta: Vec<(String, Value)>,
    /// `tokenizer.*` keys set over the vocab file's.
    pub tokenizer_meta: Vec<(String, Value)>,
    /// The weight type of each matrix: (role, layer, layer count) → type.
    pub types: TypePlan,
    /// `general.file_type` (llama.cpp's ftype of the mix).
    pub file_type: u32,
    /// Typical size of the token embedding and output weights, times 1/sqrt(n_embd).
    pub vocab_gain: f32,
    /// Centre of the final norm's weights: scales every logit, so random models have
    /// peaked next-token distributions (a larger embedding would do that too, but with
    /// tied embeddings it makes each token predict itself).
    pub lm_gain: f32,
}

/// How the weight types of a file are chosen.
#[derive(Clone, Copy, Debug)]
pub enum TypePlan {
    /// llama-quantize's choices for a mix (`shapes::type_for`).
    Mix(&'static str),
    /// One type for every matrix, another for the token embedding and output.
    Fixed { matrices: GgmlType, vocab: GgmlType },
}

impl TypePlan {
    pub fn type_for(&self, role: Role, tied: bool, layer: usize, n_layers: usize) -> GgmlType {
        match *self {
            Self::Mix(q) => shapes::type_for(q, role, tied, layer, n_layers),
            Self::Fixed { matrices, vocab } => match role {
                Role::Output | Role::TokenEmbd => vocab,
                _ => matrices,
            },
        }
    }
}

impl Spec {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// The GGUF of `spec` with `vocab`'s tokenizer, ready to write.
pub fn build(spec: &Spec, vocab: &GgufFile) -> Result<GgufWriter<'static>, gguf::Error> {
    let n_vocab = vocab.get_array("tokenizer.ggml.tokens")?.len();
    let s = spec;
    let mut w = GgufWriter::new();
    let arch = s.arch;
    w.meta("general.architecture", Value::String(arch.into()));
    w.meta("general.name", Value::String(s.name.clone()));
    w.meta("general.file_type", Value::U32(s.file_type));
    let k = |key: &str| format!("{arch}.{key}");
    let head_dims = s.head_dim != s.n_embd / s.n_heads;
    let mut arch_meta: Vec<(String, Value)> = vec![
        ("context_length".into(), Value::U32(s.context)),
        ("embedding_length".into(), Value::U32(s.n_embd as u32)),
        ("block_count".into(), Value::U32(s.n_layers as u32)),
        ("feed_forward_length".into(), Value::U32(s.n_ff as u32)),
        ("attention.head_count".into(), Value::U32(s.n_heads as u32)),
        (
            "attention.head_count_kv".into(),
            Value::U32(s.n_kv_heads as u32),
        ),
        ("rope.dimension_count".into(), Value::U32(s.n_rot as u32)),
        ("rope.freq_base".into(), Value::F32(s.rope_base)),
        (
            "attention.layer_norm_rms_epsilon".into(),
            Value::F32(s.rms_eps),
        ),
        ("vocab_size".into(), Value::U32(n_vocab as u32)),
    ];
    if head_dims {
        arch_meta.push(("attention.key_length".into(), Value::U32(s.head_dim as u32)));
        arch_meta.push((
            "attention.value_length".into(),
            Value::U32(s.head_dim as u32),
        ));
    }
    // The spec's own keys replace these.
    arch_meta.retain(|(key, _)| !s.meta.iter().any(|(m, _)| m == key));
    for (key, v) in arch_meta.iter().chain(&s.meta) {
        w.meta(&k(key), v.clone());
    }
    for (key, v) in vocab.metadata() {
        if key.starts_with("tokenizer.") && !s.tokenizer_meta.iter().any(|(k, _)| k == key) {
            w.meta(key, v.clone());
        }
    }
    for (key, v) in &s.tokenizer_meta {
        w.meta(key, v.clone());
    }

    let n = s.n_layers;
    let (d, qd, kvd, ff) = (s.n_embd, s.q_dim(), s.kv_dim(), s.n_ff);
    let mat = |w: &mut GgufWriter, name: String, role: Role, i: usize, rows: usize, cols: usize| {
        let ty = s.types.type_for(role, s.tied, i, n);
        let gain = if matches!(role, Role::Output | Role::TokenEmbd) {
            s.vocab_gain
        } else {
            1.0
        };
        let seed = name.clone();
        w.tensor_lazy(
            &name,
            &[cols as u64, rows as u64],
            ty,
            bytes_of(ty, rows * cols),
            move || random_matrix(ty, rows, cols, gain, &seed),
        );
    };
    // Norm weights vary around 1 (and biases around 0) so that a norm or bias the engine
    // forgot would show in the logits.
    let norm_around = |w: &mut GgufWriter, name: String, len: usize, centre: f32| {
        let bytes = random_vector(len, centre, 0.25 * centre, &name);
        w.tensor(&name, &[len as u64], GgmlType::F32, bytes);
    };
    let norm = |w: &mut GgufWriter, name: String, len: usize| norm_around(w, name, len, 1.0);
    let bias = |w: &mut GgufWriter, name: String, len: usize| {
        let bytes = random_vector(len, 0.0, 0.5, &name);
        w.tensor(&name, &[len as u64], GgmlType::F32, bytes);
    };
    mat(
        &mut w,
        "token_embd.weight".into(),
        Role::TokenEmbd,
        0,
        n_vocab,
        d,
    );
    norm_around(&mut w, "output_norm.weight".into(), d, s.lm_gain);
    if !s.tied {
        mat(&mut w, "output.weight".into(), Role::Output, 0, n_vocab, d);
    }
    match &s.rope_factors {
        RopeFactorTensors::None => {}
        RopeFactorTensors::Freqs(f) => {
            w.tensor(
                "rope_freqs.weight",
                &[f.len() as u64],
                GgmlType::F32,
                f32_bytes(f),
            );
        }
        RopeFactorTensors::LongShort(long, short) => {
            w.tensor(
                "rope_factors_long.weight",
                &[long.len() as u64],
                GgmlType::F32,
                f32_bytes(long),
            );
            w.tensor(
                "rope_factors_short.weight",
                &[short.len() as u64],
                GgmlType::F32,
                f32_bytes(short),
            );
        }
    }
    for i in 0..n {
        let wt = |t: &str| format!("blk.{i}.{t}.weight");
        let bs = |t: &str| format!("blk.{i}.{t}.bias");
        norm(&mut w, wt("attn_norm"), d);
        norm(&mut w, wt("ffn_norm"), d);
        if s.fused_qkv {
            mat(&mut w, wt("attn_qkv"), Role::AttnQkv, i, qd + 2 * kvd, d);
            if s.qkv_bias {
                bias(&mut w, bs("attn_qkv"), qd + 2 * kvd);
            }
        } else {
            mat(&mut w, wt("attn_q"), Role::AttnQkv, i, qd, d);
            mat(&mut w, wt("attn_k"), Role::AttnQkv, i, kvd, d);
            mat(&mut w, wt("attn_v"), Role::AttnV, i, kvd, d);
            if s.qkv_bias {
                bias(&mut w, bs("attn_q"), qd);
                bias(&mut w, bs("attn_k"), kvd);
                bias(&mut w, bs("attn_v"), kvd);
            }
        }
        if s.qk_norm {
            norm(&mut w, wt("attn_q_norm"), s.head_dim);
            norm(&mut w, wt("attn_k_norm"), s.head_dim);
        }
        mat(&mut w, wt("attn_output"), Role::AttnOutput, i, d, qd);
        if s.post_norms {
            norm(&mut w, wt("post_attention_norm"), d);
            norm(&mut w, wt("post_ffw_norm"), d);
        }
        if s.fused_gate_up {
            mat(&mut w, wt("ffn_up"), Role::FfnGateUp, i, 2 * ff, d);
        } else {
            mat(&mut w, wt("ffn_gate"), Role::FfnGateUp, i, ff, d);
            mat(&mut w, wt("ffn_up"), Role::FfnGateUp, i, ff, d);
        }
        mat(&mut w, wt("ffn_down"), Role::FfnDown, i, d, ff);
    }
    Ok(w)
}

/// Writes `spec` to `out` (through a temporary file, so a partial file never has the
/// final name).
pub fn write(spec: &Spec, vocab: &GgufFile, out: &std::path::Path) -> std::io::Result<()> {
    let w = build(spec, vocab).map_err(std::io::Error::other)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per call, not only per process: two threads writing the same model (tests
    // run in parallel) must not share a partial file, or the rename publishes a mix.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out.with_extension(format!("partial-{}-{n}", std::process::id()));
    let file = std::fs::File::create(&tmp)?;
    let mut bw = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_to(&mut bw)?;
    std::io::Write::flush(&mut bw)?;
    drop(bw);
    std::fs::rename(&tmp, out)
}
