//! The exact model: every weight decoded from the file, every operation in f64 — no
//! activation codes, no 16-bit KV cache, attention over dense per-position keys. Slow
//! and obviously right; written from each architecture's definition (llama.cpp's graph),
//! independently of the engine's kernels, so that "closer to exact than llama.cpp" can
//! be measured on any architecture.

use gguf::GgufFile;
use kernels::QuantFormat;
use model::{Activation, Config};

/// A matrix decoded to f32 (the decoded values are exact in f32 for these formats).
struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
}

impl Mat {
    fn load(f: &GgufFile, name: &str) -> Option<Self> {
        let t = f.tensor(name)?.clone();
        let fmt = QuantFormat::from_ggml_name(t.ty.name()).unwrap();
        let cols = t.dims[0] as usize;
        let rows = t.n_elements as usize / cols;
        let mut w = vec![0f32; rows * cols];
        kernels::quant::dequantize_row(fmt, f.tensor_data(&t), &mut w);
        Some(Self { rows, cols, w })
    }

    /// `W x` in f64.
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.cols);
        self.w
            .chunks_exact(self.cols)
            .map(|r| r.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum())
            .collect()
    }
}

fn vector(f: &GgufFile, name: &str) -> Option<Vec<f64>> {
    Mat::load(f, name).map(|m| m.w.iter().map(|&v| v as f64).collect())
}

struct Layer {
    attn_norm: Vec<f64>,
    q: Mat,
    k: Mat,
    v: Mat,
    q_bias: Option<Vec<f64>>,
    k_bias: Option<Vec<f64>>,
    v_bias: Option<Vec<f64>>,
    q_norm: Option<Vec<f64>>,
    k_norm: Option<Vec<f64>>,
    wo: Mat,
    wo_bias: Option<Vec<f64>>,
    attn_post_norm: Option<Vec<f64>>,
    ffn_norm: Vec<f64>,
    gate: Mat,
    up: Mat,
    down: Mat,
    ffn_post_norm: Option<Vec<f64>>,
}

/// Rows `from..from + n` of `m` as a matrix of their own.
fn rows_of(m: &Mat, from: usize, n: usize) -> Mat {
    Mat {
        rows: n,
        cols: m.cols,
        w: m.w[from * m.cols..(from + n) * m.cols].to_vec(),
    }
}

pub struct Exact {
    c: Config,
    embd: Mat,
    output: Option<Mat>,
    output_bias: Option<Vec<f64>>,
    out_norm: Vec<f64>,
    rope_factors: Option<Vec<f64>>,
    layers: Vec<Layer>,
}

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

impl Exact {
    pub fn load(f: &GgufFile, c: &Config) -> Self {
        // Phi-3's long factors apply when the model's context exceeds the original one.
        let long = c.context_length > c.n_ctx_orig;
        let rope_factors = vector(f, "rope_freqs.weight").or_else(|| {
            vector(
                f,
                if long {
                    "rope_factors_long.weight"
                } else {
                    "rope_factors_short.weight"
                },
            )
        });
        let (qd, kvd, ff) = (c.q_dim(), c.kv_dim(), c.n_ff);
        let layers = (0..c.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                let (q, k, v, qb, kb, vb) = match Mat::load(f, &n("attn_qkv")) {
                    Some(qkv) => {
                        let split = |bias: Option<Vec<f64>>| match bias {
                            Some(v) => (
                                Some(v[..qd].to_vec()),
                                Some(v[qd..qd + kvd].to_vec()),
                                Some(v[qd + kvd..].to_vec()),
                            ),
                            None => (
                                vector(f, &b("attn_q")),
                                vector(f, &b("attn_k")),
                                vector(f, &b("attn_v")),
                            ),
                        };
                        let (qb, kb, vb) = split(vector(f, &b("attn_qkv")));
                        (
                            rows_of(&qkv, 0, qd),
                            rows_of(&qkv, qd, kvd),
                            rows_of(&qkv, qd + kvd, kvd),
                            qb,
                            kb,
                            vb,
                        )
                    }
                    None => (
                        Mat::load(f, &n("attn_q")).unwrap(),
                        Mat::load(f, &n("attn_k")).unwrap(),
                        Mat::load(f, &n("attn_v")).unwrap(),
                        vector(f, &b("attn_q")),
                        vector(f, &b("attn_k")),
                        vector(f, &b("attn_v")),
                    ),
                };
                let (gate, up) = match Mat::load(f, &n("ffn_gate")) {
                    Some(g) => (g, Mat::load(f, &n("ffn_up")).unwrap()),
                    None => {
                        let gu = Mat::load(f, &n("ffn_up")).unwrap();
                        (rows_of(&gu, 0, ff), rows_of(&gu, ff, ff))
                    }
                };
                Layer {
                    attn_norm: vector(f, &n("attn_norm")).unwrap(),
                    q,
                    k,
                    v,
                    q_bias: qb,
                    k_bias: kb,
                    v_bias: vb,
                    q_norm: vector(f, &n("attn_q_norm")),
                    k_norm: vector(f, &n("attn_k_norm")),
                    wo: Mat::load(f, &n("attn_output")).unwrap(),
                    wo_bias: vector(f, &b("attn_output")),
                    attn_post_norm: vector(f, &n("post_attention_norm")),
                    ffn_norm: vector(f, &n("ffn_norm")).unwrap(),
                    gate,
                    up,
                    down: Mat::load(f, &n("ffn_down")).unwrap(),
                    ffn_post_norm: vector(f, &n("post_ffw_norm")),
                }
            })
            .collect();
        Self {
            embd: Mat::load(f, "token_embd.weight").unwrap(),
            output: Mat::load(f, "output.weight"),
            output_bias: vector(f, "output.bias"),
            out_norm: vector(f, "output_norm.weight").unwrap(),
            rope_factors,
            layers,
            c: c.clone(),
        }
    }

    /// Rotates the first `n_rot` dims of one head at `pos` with layer `il`'s rope.
    fn rope(&self, il: usize, head: &mut [f64], pos: usize) {
        let c = &self.c;
        let p = match &c.sliding_window {
            Some(sw) if c.is_windowed(il) => sw.rope,
            _ => c.rope,
        };
        let half = p.dims / 2;
        let yarn = p.ext_factor != 0.0;
        let mscale = if yarn {
            p.attn_factor * (1.0 + 0.1 * (1.0 / p.freq_scale).ln())
        } else {
            p.attn_factor
        };
        for i in 0..half {
            let mut extrap = pos as f64 / p.base.powf(2.0 * i as f64 / p.dims as f64);
            if let Some(f) = &self.rope_factors {
                extrap /= f[i];
            }
            let interp = extrap * p.freq_scale;
            let theta = if yarn {
                let y = (i as f64 - p.corr_dims[0]) / (p.corr_dims[1] - p.corr_dims[0]).max(0.001);
                let mix = (1.0 - y.clamp(0.0, 1.0)) * p.ext_factor;
                interp * (1.0 - mix) + extrap * mix
            } else {
                interp
            };
            let (s, co) = theta.sin_cos();
            let (a, b) = match c.graph.rope_style {
                kernels::ops::RopeStyle::Pairs => (2 * i, 2 * i + 1),
                kernels::ops::RopeStyle::Halves => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = (x0 * co - x1 * s) * mscale;
            head[b] = (x0 * s + x1 * co) * mscale;
        }
    }

    /// Log-softmax of the next-token distribution at every position of `tokens`.
    pub fn log_probs(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let c = &self.c;
        let (d, hd) = (c.n_embd, c.head_dim);
        let eps = c.rms_eps as f64;
        let group = c.n_heads / c.n_kv_heads;
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                let row = &self.embd.w[t as usize * d..(t as usize + 1) * d];
                let s = c.graph.embd_scale.map_or(1.0, |s| s as f64);
                row.iter().map(|&v| v as f64 * s).collect()
            })
            .collect();
        for (il, l) in self.layers.iter().enumerate() {
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            let mut qs = Vec::new();
            for (pos, x) in xs.iter().enumerate() {
                let xn = rmsnorm(x, &l.attn_norm, eps);
                let mut q = l.q.apply(&xn);
                let mut k = l.k.apply(&xn);
                let mut v = l.v.apply(&xn);
                for (t, b) in [
                    (&mut q, &l.q_bias),
                    (&mut k, &l.k_bias),
                    (&mut v, &l.v_bias),
                ] {
                    if let Some(b) = b {
                        add(t, b);
                    }
                }
                for (t, w) in [(&mut q, &l.q_norm), (&mut k, &l.k_norm)] {
                    if let Some(w) = w {
                        for h in t.chunks_exact_mut(hd) {
                            let n = rmsnorm(h, w, eps);
                            h.copy_from_slice(&n);
                        }
                    }
                }
                for h in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    self.rope(il, h, pos);
                }
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            let window = c
                .sliding_window
                .as_ref()
                .filter(|_| c.is_windowed(il))
                .map(|s| s.window);
            for (pos, x) in xs.iter_mut().enumerate() {
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let mut att = vec![0f64; c.q_dim()];
                for h in 0..c.n_heads {
                    let kh = h / group;
                    let q = &qs[pos][h * hd..(h + 1) * hd];
                    let scores: Vec<f64> = (first..=pos)
                        .map(|p| {
                            let k = &ks[p][kh * hd..(kh + 1) * hd];
                            let s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>()
                                * c.attn_scale as f64;
                            match c.attn_softcap {
                                Some(cap) => cap as f64 * (s / cap as f64).tanh(),
                                None => s,
                            }
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, p) in (first..=pos).enumerate() {
                        let v = &vs[p][kh * hd..(kh + 1) * hd];
                        for (o, vv) in att[h * hd..(h + 1) * hd].iter_mut().zip(v) {
                            *o += e[j] / z * vv;
                        }
                    }
                }
                let mut o = l.wo.apply(&att);
                if let Some(b) = &l.wo_bias {
                    add(&mut o, b);
                }
                if let Some(w) = &l.attn_post_norm {
                    o = rmsnorm(&o, w, eps);
                }
                add(x, &o);
                let xn = rmsnorm(x, &l.ffn_norm, eps);
                let g = l.gate.apply(&xn);
                let u = l.up.apply(&xn);
                let h: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(&g, &u)| {
                        let a = match c.graph.activation {
                            Activation::Silu => g / (1.0 + (-g).exp()),
                            Activation::GeluTanh => {
                                let k = (2.0 / std::f64::consts::PI).sqrt();
                                0.5 * g * (1.0 + (k * (g + 0.044715 * g * g * g)).tanh())
                            }
                        };
                        a * u
                    })
                    .collect();
                let mut o = l.down.apply(&h);
                if let Some(w) = &l.ffn_post_norm {
                    o = rmsnorm(&o, w, eps);
                }
                add(x, &o);
            }
        }
        let lm = self.output.as_ref().unwrap_or(&self.embd);
        assert_eq!(lm.rows, c.vocab_size);
        xs.iter()
            .map(|x| {
                let xn = rmsnorm(x, &self.out_norm, eps);
                let mut logits = lm.apply(&xn);
                if let Some(b) = &self.output_bias {
                    add(&mut logits, b);
                }
                if let Some(cap) = c.graph.final_softcap {
                    let cap = cap as f64;
                    logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
                }
                let m = logits.iter().cloned().fold(f64::MIN, f64::max);
                let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                logits.iter().map(|v| v - lse).collect()
            })
            .collect()
    }
}
