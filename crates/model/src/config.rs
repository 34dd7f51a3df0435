use crate::arch::{self, Arch, Graph};
use crate::{Error, Result};
use gguf::GgufFile;
use kernels::ops::{yarn_corr_dims, RopeParams};

/// Sliding-window attention on some layers (Gemma 2 and 3, Mistral where set).
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    /// A query sees this many positions, itself included.
    pub window: usize,
    /// Which layers use the window; the others attend over the whole context.
    pub layers: Vec<bool>,
    /// The rope of windowed layers (Gemma 3 gives them their own base).
    pub rope: RopeParams,
}

/// Hyperparameters of a decoder-only transformer, read from `{arch}.*` metadata the way
/// llama.cpp reads them; `graph` says how the architecture's layers differ from llama's.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub graph: Graph,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Rotated dimensions of each head (`rope.dimension_count`; GLM-4 rotates half).
    pub n_rot: usize,
    /// The rope of every layer without a sliding window.
    pub rope: RopeParams,
    /// The context the rope scaling was trained for (YaRN's and LongRoPE's reference).
    pub n_ctx_orig: usize,
    pub rms_eps: f32,
    /// Multiplies `q·k` (1/sqrt(head_dim) unless the architecture says otherwise).
    pub attn_scale: f32,
    /// Gemma 2's attention-score soft cap.
    pub attn_softcap: Option<f32>,
    pub sliding_window: Option<SlidingWindow>,
    pub vocab_size: usize,
    pub context_length: usize,
}

/// Typed metadata of one architecture (`{arch}.key`).
pub(crate) struct Meta<'a> {
    pub f: &'a GgufFile,
    pub arch: &'a str,
}

impl Meta<'_> {
    pub fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    pub fn u64_opt(&self, k: &str) -> Result<Option<u64>> {
        match self.f.get(&self.key(k)) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::Config(format!(
                    "{} is {}, expected one unsigned integer (per-layer arrays are not supported)",
                    self.key(k),
                    v.type_name()
                ))
            }),
        }
    }
    pub fn usize(&self, k: &str) -> Result<usize> {
        self.u64_opt(k)?
            .map(|v| v as usize)
            .ok_or_else(|| Error::Config(format!("{} is missing", self.key(k))))
    }
    pub fn usize_or(&self, k: &str, d: usize) -> Result<usize> {
        Ok(self.u64_opt(k)?.map_or(d, |v| v as usize))
    }
    pub fn f64_opt(&self, k: &str) -> Option<f64> {
        self.f.get(&self.key(k)).and_then(|v| v.as_f64())
    }
    pub fn str_opt(&self, k: &str) -> Option<&str> {
        self.f.get(&self.key(k)).and_then(|v| v.as_str())
    }
}

/// ggml's rope settings from `rope.*` metadata, as llama.cpp's context derives them.
fn rope_from_meta(m: &Meta, dims: usize, n_ctx_orig: usize) -> Result<RopeParams> {
    let base = m.f64_opt("rope.freq_base").unwrap_or(10000.0);
    let kind = m.str_opt("rope.scaling.type").unwrap_or("linear");
    let factor = m
        .f64_opt("rope.scaling.factor")
        .or_else(|| m.f64_opt("rope.scale_linear"))
        .unwrap_or(0.0);
    let mut freq_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
    let yarn = match kind {
        "none" => {
            freq_scale = 1.0;
            false
        }
        "linear" | "longrope" => false,
        "yarn" => true,
        other => {
            return Err(Error::Config(format!(
                "rope scaling {other:?} is not supported (none, linear, yarn, longrope)"
            )))
        }
    };
    if !(freq_scale > 0.0 && freq_scale.is_finite()) {
        return Err(Error::Config(format!("rope scaling factor {factor}")));
    }
    let ext_factor = m
        .f64_opt("rope.scaling.yarn_ext_factor")
        .filter(|&e| e >= 0.0)
        .unwrap_or(if yarn { 1.0 } else { 0.0 });
    let mut attn_factor = m.f64_opt("rope.scaling.yarn_attn_factor").unwrap_or(1.0);
    if ext_factor != 0.0 {
        let mscale = |scale: f64, m: f64| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        let factor = 1.0 / freq_scale;
        let log_mul = m.f64_opt("rope.scaling.yarn_log_multiplier").unwrap_or(0.0);
        attn_factor = if log_mul != 0.0 {
            mscale(factor, 1.0) / mscale(factor, log_mul)
        } else {
            mscale(factor, 1.0)
        };
        // The kernel multiplies by (1 + 0.1 ln factor) again; llama.cpp cancels it here.
        attn_factor /= 1.0 + 0.1 * factor.ln();
    }
    attn_factor *= m.f64_opt("rope.scaling.attn_factor").unwrap_or(1.0);
    let beta_fast = m.f64_opt("rope.scaling.yarn_beta_fast").unwrap_or(32.0);
    let beta_slow = m.f64_opt("rope.scaling.yarn_beta_slow").unwrap_or(1.0);
    Ok(RopeParams {
        dims,
        base,
        freq_scale,
        ext_factor,
        attn_factor,
        corr_dims: yarn_corr_dims(dims, n_ctx_orig, base, beta_fast, beta_slow),
    })
}

impl Config {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let name = f.get_str("general.architecture")?;
        let arch = Arch::from_name(name)?;
        let m = Meta { f, arch: name };
        let n_embd = m.usize("embedding_length")?;
        let n_heads = m.usize("attention.head_count")?;
        let n_kv_heads = m.usize_or("attention.head_count_kv", n_heads)?;
        if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(Error::Config(format!(
                "{n_heads} heads and {n_kv_heads} KV heads do not divide"
            )));
        }
        let head_dim = m.usize_or("attention.key_length", n_embd / n_heads)?;
        let v_dim = m.usize_or("attention.value_length", n_embd / n_heads)?;
        if head_dim == 0 || v_dim != head_dim {
            return Err(Error::Config(format!(
                "key length {head_dim} and value length {v_dim} must be equal and nonzero"
            )));
        }
        let n_rot = m.usize_or("rope.dimension_count", head_dim)?;
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "rope dimension {n_rot} with head size {head_dim}"
            )));
        }
        let context_length = m.usize_or("context_length", 2048)?;
        let n_ctx_orig = m.usize_or("rope.scaling.original_context_length", context_length)?;
        let rope = rope_from_meta(&m, n_rot, n_ctx_orig)?;
        let vocab_size = match m.u64_opt("vocab_size")? {
            Some(v) => v as usize,
            None => f.get_array("tokenizer.ggml.tokens")?.len(),
        };
        let mut c = Self {
            arch,
            graph: Graph::llama(),
            n_layers: m.usize("block_count")?,
            n_embd,
            n_ff: m.usize("feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            n_rot,
            rope,
            n_ctx_orig,
            rms_eps: m
                .f64_opt("attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5) as f32,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            attn_softcap: None,
            sliding_window: None,
            vocab_size,
            context_length,
        };
        arch::configure(&m, &mut c)?;
        if let Some(sw) = &c.sliding_window {
            if sw.window == 0 || sw.layers.len() != c.n_layers {
                return Err(Error::Config(format!(
                    "sliding window {} over {} of {} layers",
                    sw.window,
                    sw.layers.len(),
                    c.n_layers
                )));
            }
        }
        Ok(c)
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// KV-cache bytes per token (f32 K and V over all layers).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.n_layers * self.kv_dim() * 4
    }

    /// Whether layer `il` attends through a sliding window.
    pub fn is_windowed(&self, il: usize) -> bool {
        self.sliding_window
            .as_ref()
            .is_some_and(|s| s.layers.get(il).copied().unwrap_or(false))
    }
}
