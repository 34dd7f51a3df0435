use crate::arch::RopeFactors;
use crate::{Config, Error, Result};
use gguf::GgufFile;
use kernels::{PackedMatrix, QuantFormat, ThreadPool};
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Matrices whose outputs are used side by side (Q|K|V, gate|up). When the parts share a
/// weight type their rows are concatenated into one matrix so one pass computes all
/// (a file that stores them fused, as Phi-3 and GLM-4 do, is one part already).
pub(crate) struct Stacked {
    pub parts: Vec<PackedMatrix>,
    pub widths: Vec<usize>,
}

impl Stacked {
    pub fn width(&self) -> usize {
        self.widths.iter().sum()
    }
}

pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,
    /// Q | K | V rows.
    pub qkv: Stacked,
    pub qkv_bias: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: PackedMatrix,
    pub wo_bias: Option<Vec<f32>>,
    pub attn_post_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    /// Gate | up rows.
    pub gate_up: Stacked,
    pub gate_up_bias: Option<Vec<f32>>,
    pub down: PackedMatrix,
    pub down_bias: Option<Vec<f32>>,
    pub ffn_post_norm: Option<Vec<f32>>,
}

pub struct Model {
    pub config: Config,
    pub(crate) embd: PackedMatrix,
    pub(crate) layers: Vec<Layer>,
    pub(crate) out_norm: Vec<f32>,
    /// `None` when the output projection is tied to the embeddings.
    pub(crate) output: Option<PackedMatrix>,
    pub(crate) output_bias: Option<Vec<f32>>,
    /// The per-pair rope factors in use (see `use_context` for Phi-3's two sets).
    pub(crate) rope_factors: Option<Vec<f32>>,
    rope_long_short: Option<(Vec<f32>, Vec<f32>)>,
    pub pool: Arc<ThreadPool>,
}

fn format_of(f: &GgufFile, name: &str) -> Result<(QuantFormat, gguf::TensorInfo)> {
    let t = f
        .tensor(name)
        .ok_or_else(|| gguf::Error::MissingTensor(name.to_string()))?
        .clone();
    let fmt = QuantFormat::from_ggml_name(t.ty.name()).ok_or_else(|| Error::UnsupportedType {
        name: name.to_string(),
        ty: t.ty.name().to_string(),
    })?;
    Ok((fmt, t))
}

/// Reads tensors by name, remembering which ones it took: a tensor the architecture
/// does not use means the file is not what its `general.architecture` says (or needs
/// a feature this engine lacks), so loading fails naming it instead of computing
/// something else.
struct Loader<'a> {
    f: &'a GgufFile,
    /// Repacks each matrix's panels on every thread.
    pool: &'a ThreadPool,
    used: RefCell<HashSet<String>>,
}

impl<'a> Loader<'a> {
    fn new(f: &'a GgufFile, pool: &'a ThreadPool) -> Self {
        Self {
            f,
            pool,
            used: RefCell::new(HashSet::new()),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.f.tensor(name).is_some()
    }

    fn take(&self, name: &str) {
        self.used.borrow_mut().insert(name.to_string());
    }

    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<PackedMatrix> {
        let (fmt, t) = format_of(self.f, name)?;
        let want = vec![cols as u64, rows as u64];
        if t.dims != want {
            return Err(Error::Shape {
                name: name.to_string(),
                got: t.dims.clone(),
                want,
            });
        }
        self.take(name);
        let data = self.f.tensor_data(&t);
        let m = PackedMatrix::from_ggml_parts(fmt, &[data], rows, cols, Some(self.pool))?;
        self.f.release(&t);
        Ok(m)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let (fmt, t) = format_of(self.f, name)?;
        if t.n_elements != len as u64 {
            return Err(Error::Shape {
                name: name.to_string(),
                got: t.dims.clone(),
                want: vec![len as u64],
            });
        }
        self.take(name);
        let mut v = vec![0f32; len];
        kernels::quant::dequantize_row(fmt, self.f.tensor_data(&t), &mut v);
        Ok(v)
    }

    fn opt_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Biases of stacked parts, concatenated; a missing part's bias is zero. `None`
    /// when no part has one.
    fn stacked_bias(&self, names: &[String], widths: &[usize]) -> Result<Option<Vec<f32>>> {
        if !names.iter().any(|n| self.has(n)) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(widths.iter().sum());
        for (n, &w) in names.iter().zip(widths) {
            match self.opt_vector(n, w)? {
                Some(v) => out.extend(v),
                None => out.resize(out.len() + w, 0.0),
            }
        }
        Ok(Some(out))
    }

    fn stacked(&self, names: &[String], cols: usize, rows: &[usize]) -> Result<Stacked> {
        let fmts: Vec<QuantFormat> = names
            .iter()
            .map(|n| format_of(self.f, n).map(|x| x.0))
            .collect::<Result<_>>()?;
        if fmts.iter().all(|&x| x == fmts[0]) {
            let mut parts = Vec::with_capacity(names.len());
            for (n, &r) in names.iter().zip(rows) {
                let (t, data) = self.f.tensor_bytes(n)?;
                let want = vec![cols as u64, r as u64];
                if t.dims != want {
                    return Err(Error::Shape {
                        name: n.clone(),
                        got: t.dims.clone(),
                        want,
                    });
                }
                parts.push(data);
            }
            let total = rows.iter().sum();
            let m = PackedMatrix::from_ggml_parts(fmts[0], &parts, total, cols, Some(self.pool))?;
            for n in names {
                self.take(n);
                if let Some(t) = self.f.tensor(n) {
                    self.f.release(t);
                }
            }
            return Ok(Stacked {
                parts: vec![m],
                widths: vec![total],
            });
        }
        let parts = names
            .iter()
            .zip(rows)
            .map(|(n, &r)| self.matrix(n, cols, r))
            .collect::<Result<_>>()?;
        Ok(Stacked {
            parts,
            widths: rows.to_vec(),
        })
    }

    /// Fails naming the tensors nothing took.
    fn finish(self) -> Result<()> {
        let used = self.used.into_inner();
        let mut left: Vec<&str> = self
            .f
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !used.contains(*n))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        left.sort_unstable();
        let more = left.len().saturating_sub(5);
        left.truncate(5);
        Err(Error::UnusedTensors(format!(
            "{}{}",
            left.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )))
    }
}

fn layer(l: &Loader, c: &Config, i: usize) -> Result<Layer> {
    let n = |s: &str| format!("blk.{i}.{s}.weight");
    let b = |s: &str| format!("blk.{i}.{s}.bias");
    let (d, qd, kvd, ff) = (c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff);
    let qkv_w = qd + 2 * kvd;
    let (qkv, qkv_bias) = if l.has(&n("attn_qkv")) {
        let m = l.matrix(&n("attn_qkv"), d, qkv_w)?;
        let bias = match l.opt_vector(&b("attn_qkv"), qkv_w)? {
            Some(v) => Some(v),
            None => l.stacked_bias(&[b("attn_q"), b("attn_k"), b("attn_v")], &[qd, kvd, kvd])?,
        };
        (
            Stacked {
                parts: vec![m],
                widths: vec![qkv_w],
            },
            bias,
        )
    } else {
        (
            l.stacked(&[n("attn_q"), n("attn_k"), n("attn_v")], d, &[qd, kvd, kvd])?,
            l.stacked_bias(&[b("attn_q"), b("attn_k"), b("attn_v")], &[qd, kvd, kvd])?,
        )
    };
    let (gate_up, gate_up_bias) = if l.has(&n("ffn_gate")) {
        (
            l.stacked(&[n("ffn_gate"), n("ffn_up")], d, &[ff, ff])?,
            l.stacked_bias(&[b("ffn_gate"), b("ffn_up")], &[ff, ff])?,
        )
    } else {
        // Fused: `ffn_up` holds the gate's rows, then the up projection's.
        (
            Stacked {
                parts: vec![l.matrix(&n("ffn_up"), d, 2 * ff)?],
                widths: vec![2 * ff],
            },
            l.opt_vector(&b("ffn_up"), 2 * ff)?,
        )
    };
    let g = &c.graph;
    let required = |name: &str, len: usize, need: bool| -> Result<Option<Vec<f32>>> {
        if need {
            l.vector(&n(name), len).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(Layer {
        attn_norm: l.vector(&n("attn_norm"), d)?,
        qkv,
        qkv_bias,
        q_norm: required("attn_q_norm", c.head_dim, g.qk_norm)?,
        k_norm: required("attn_k_norm", c.head_dim, g.qk_norm)?,
        wo: l.matrix(&n("attn_output"), qd, d)?,
        wo_bias: l.opt_vector(&b("attn_output"), d)?,
        attn_post_norm: required("post_attention_norm", d, g.post_norms)?,
        ffn_norm: l.vector(&n("ffn_norm"), d)?,
        gate_up,
        gate_up_bias,
        down: l.matrix(&n("ffn_down"), ff, d)?,
        down_bias: l.opt_vector(&b("ffn_down"), d)?,
        ffn_post_norm: required("post_ffw_norm", d, g.post_norms)?,
    })
}

impl Model {
    pub fn load(path: impl AsRef<Path>, pool: Arc<ThreadPool>) -> Result<Self> {
        let f = GgufFile::open(path)?;
        Self::from_gguf(&f, pool)
    }

    pub fn from_gguf(f: &GgufFile, pool: Arc<ThreadPool>) -> Result<Self> {
        let c = Config::from_gguf(f)?;
        let l = Loader::new(f, &pool);
        let d = c.n_embd;
        let embd = l.matrix("token_embd.weight", d, c.vocab_size)?;
        let output = if l.has("output.weight") {
            Some(l.matrix("output.weight", d, c.vocab_size)?)
        } else {
            None
        };
        let output_bias = l.opt_vector("output.bias", c.vocab_size)?;
        let half = c.n_rot / 2;
        let (rope_factors, rope_long_short) = match c.graph.rope_factors {
            RopeFactors::Freqs => (l.opt_vector("rope_freqs.weight", half)?, None),
            RopeFactors::LongShort => {
                let long = l.opt_vector("rope_factors_long.weight", half)?;
                let short = l.opt_vector("rope_factors_short.weight", half)?;
                match (long, short) {
                    (Some(long), Some(short)) => (None, Some((long, short))),
                    (None, None) => (None, None),
                    _ => {
                        return Err(Error::Config(
                            "LongRoPE needs both rope_factors_long and rope_factors_short".into(),
                        ))
                    }
                }
            }
        };
        let layers = (0..c.n_layers)
            .map(|i| layer(&l, &c, i))
            .collect::<Result<Vec<_>>>()?;
        let out_norm = l.vector("output_norm.weight", d)?;
        l.finish()?;
        let mut m = Self {
            embd,
            layers,
            out_norm,
            output,
            output_bias,
            rope_factors,
            rope_long_short,
            pool,
            config: c,
        };
        m.use_context(m.config.context_length);
        Ok(m)
    }

    /// The longest context this model will be run with. Phi-3's LongRoPE has one set of
    /// rope factors for contexts within the original training length and one beyond;
    /// like llama.cpp, the choice is made once for the configured context (positions in
    /// the KV cache must not change meaning as a sequence grows).
    pub fn use_context(&mut self, n_ctx: usize) {
        if let Some((long, short)) = &self.rope_long_short {
            let long_ctx = n_ctx > self.config.n_ctx_orig;
            self.rope_factors = Some(if long_ctx { long } else { short }.clone());
        }
    }

    /// Activation code bits of every quantized matrix (see
    /// `PackedMatrix::set_activation_bits`): 16 by default, 8 for llama.cpp's arithmetic.
    pub fn set_activation_bits(&mut self, bits: u8) {
        let lm = self.output.as_mut().unwrap_or(&mut self.embd);
        lm.set_activation_bits(bits);
        for l in &mut self.layers {
            for m in l.qkv.parts.iter_mut().chain(l.gate_up.parts.iter_mut()) {
                m.set_activation_bits(bits);
            }
            l.wo.set_activation_bits(bits);
            l.down.set_activation_bits(bits);
        }
    }

    /// Bytes of weights the kernels stream per token at batch 1.
    pub fn weight_bytes(&self) -> usize {
        let lm = self.output.as_ref().unwrap_or(&self.embd).packed_bytes();
        lm + self
            .layers
            .iter()
            .map(|l| {
                l.qkv
                    .parts
                    .iter()
                    .chain(l.gate_up.parts.iter())
                    .map(|m| m.packed_bytes())
                    .sum::<usize>()
                    + l.wo.packed_bytes()
                    + l.down.packed_bytes()
            })
            .sum::<usize>()
    }

    pub(crate) fn lm_head(&self) -> &PackedMatrix {
        self.output.as_ref().unwrap_or(&self.embd)
    }
}
