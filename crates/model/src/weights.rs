use crate::{Config, Error, Result};
use gguf::GgufFile;
use kernels::{PackedMatrix, QuantFormat, ThreadPool};
use std::path::Path;
use std::sync::Arc;

/// Matrices whose outputs are used side by side (Q|K|V, gate|up). When the parts share a
/// weight type their rows are concatenated into one matrix so one pass computes all.
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
    pub qkv: Stacked,
    pub wo: PackedMatrix,
    pub ffn_norm: Vec<f32>,
    pub gate_up: Stacked,
    pub down: PackedMatrix,
}

pub struct Model {
    pub config: Config,
    pub(crate) embd: PackedMatrix,
    pub(crate) layers: Vec<Layer>,
    pub(crate) out_norm: Vec<f32>,
    /// `None` when the output projection is tied to the embeddings.
    pub(crate) output: Option<PackedMatrix>,
    pub(crate) rope_factors: Option<Vec<f32>>,
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

fn matrix(f: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<PackedMatrix> {
    let (fmt, t) = format_of(f, name)?;
    let want = vec![cols as u64, rows as u64];
    if t.dims != want {
        return Err(Error::Shape {
            name: name.to_string(),
            got: t.dims.clone(),
            want,
        });
    }
    let m = PackedMatrix::from_ggml(fmt, f.tensor_data(&t), rows, cols)?;
    f.release(&t);
    Ok(m)
}

fn vector(f: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    let (fmt, t) = format_of(f, name)?;
    if t.n_elements != len as u64 {
        return Err(Error::Shape {
            name: name.to_string(),
            got: t.dims.clone(),
            want: vec![len as u64],
        });
    }
    let mut v = vec![0f32; len];
    kernels::quant::dequantize_row(fmt, f.tensor_data(&t), &mut v);
    Ok(v)
}

fn stacked(f: &GgufFile, names: &[String], cols: usize, rows: &[usize]) -> Result<Stacked> {
    let fmts: Vec<QuantFormat> = names
        .iter()
        .map(|n| format_of(f, n).map(|x| x.0))
        .collect::<Result<_>>()?;
    if fmts.iter().all(|&x| x == fmts[0]) {
        let mut bytes = Vec::new();
        for (n, &r) in names.iter().zip(rows) {
            let (t, data) = f.tensor_bytes(n)?;
            let want = vec![cols as u64, r as u64];
            if t.dims != want {
                return Err(Error::Shape {
                    name: n.clone(),
                    got: t.dims.clone(),
                    want,
                });
            }
            bytes.extend_from_slice(data);
        }
        let total = rows.iter().sum();
        let m = PackedMatrix::from_ggml(fmts[0], &bytes, total, cols)?;
        for n in names {
            if let Some(t) = f.tensor(n) {
                f.release(t);
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
        .map(|(n, &r)| matrix(f, n, cols, r))
        .collect::<Result<_>>()?;
    Ok(Stacked {
        parts,
        widths: rows.to_vec(),
    })
}

impl Model {
    pub fn load(path: impl AsRef<Path>, pool: Arc<ThreadPool>) -> Result<Self> {
        let f = GgufFile::open(path)?;
        Self::from_gguf(&f, pool)
    }

    pub fn from_gguf(f: &GgufFile, pool: Arc<ThreadPool>) -> Result<Self> {
        let c = Config::from_gguf(f)?;
        let (d, qd, kvd) = (c.n_embd, c.q_dim(), c.kv_dim());
        let embd = matrix(f, "token_embd.weight", d, c.vocab_size)?;
        let output = if f.tensor("output.weight").is_some() {
            Some(matrix(f, "output.weight", d, c.vocab_size)?)
        } else {
            None
        };
        let rope_factors = if f.tensor("rope_freqs.weight").is_some() {
            Some(vector(f, "rope_freqs.weight", c.n_rot / 2)?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: vector(f, &n("attn_norm"), d)?,
                qkv: stacked(
                    f,
                    &[n("attn_q"), n("attn_k"), n("attn_v")],
                    d,
                    &[qd, kvd, kvd],
                )?,
                wo: matrix(f, &n("attn_output"), qd, d)?,
                ffn_norm: vector(f, &n("ffn_norm"), d)?,
                gate_up: stacked(f, &[n("ffn_gate"), n("ffn_up")], d, &[c.n_ff, c.n_ff])?,
                down: matrix(f, &n("ffn_down"), c.n_ff, d)?,
            });
        }
        let out_norm = vector(f, "output_norm.weight", d)?;
        Ok(Self {
            config: c,
            embd,
            layers,
            out_norm,
            output,
            rope_factors,
            pool,
        })
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
