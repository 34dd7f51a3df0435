//! One forward pass over a batch of sequences: prefill chunks and single-token decodes go
//! through the same code, each sequence with its own positions and KV block table.

use crate::arch::Activation;
use crate::weights::{Model, Stacked};
use crate::{Error, KvCache, Result};
use kernels::ops::{self, AttnParams, AttnSeq, RopeParams};
use kernels::{matmul, ThreadPool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WantLogits {
    None,
    Last,
    All,
    /// Rows for tokens `i..` of this sequence's input.
    From(usize),
}

/// One sequence's share of a step: `tokens` sit at positions `start_pos..`, and
/// `block_table` maps every position up to the last of them to a KV block.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
    pub logits: WantLogits,
}

/// Logit rows in batch order; `rows[i]` says which sequence and position row `i` is for.
pub struct Logits {
    pub data: Vec<f32>,
    pub vocab: usize,
    pub rows: Vec<(usize, usize)>,
}

impl Logits {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Index of the last logit row computed for sequence `seq`.
    pub fn last_row_for(&self, seq: usize) -> Option<usize> {
        self.rows.iter().rposition(|r| r.0 == seq)
    }

    /// The last logit row computed for sequence `seq`.
    pub fn last_for(&self, seq: usize) -> Option<&[f32]> {
        self.rows
            .iter()
            .rposition(|r| r.0 == seq)
            .map(|i| self.row(i))
    }
}

/// Keeps rows `keep` (ascending) of a matrix of `width`-long rows, in order.
fn gather_rows(m: &mut Vec<f32>, width: usize, keep: &[usize]) {
    for (i, &r) in keep.iter().enumerate() {
        m.copy_within(r * width..(r + 1) * width, i * width);
    }
    m.truncate(keep.len() * width);
}

fn stacked_matmul(pool: &ThreadPool, s: &Stacked, x: &[f32], m: usize, out: &mut [f32]) {
    if s.parts.len() == 1 {
        matmul(pool, &s.parts[0], x, m, out);
        return;
    }
    let width = s.width();
    let mut col = 0;
    for (p, &w) in s.parts.iter().zip(&s.widths) {
        let mut tmp = vec![0f32; m * w];
        matmul(pool, p, x, m, &mut tmp);
        for r in 0..m {
            out[r * width + col..r * width + col + w].copy_from_slice(&tmp[r * w..(r + 1) * w]);
        }
        col += w;
    }
}

impl Model {
    fn validate(&self, kv: &KvCache, seqs: &[SeqInput]) -> Result<()> {
        for (i, s) in seqs.iter().enumerate() {
            if let Some(&t) = s
                .tokens
                .iter()
                .find(|&&t| t as usize >= self.config.vocab_size)
            {
                return Err(Error::Batch(format!(
                    "sequence {i}: token {t} outside the vocabulary of {}",
                    self.config.vocab_size
                )));
            }
            let end = s.start_pos + s.tokens.len();
            if end > s.block_table.len() * kv.block_size {
                return Err(Error::Batch(format!(
                    "sequence {i}: block table covers {} positions, needs {end}",
                    s.block_table.len() * kv.block_size
                )));
            }
            if let Some(&b) = s.block_table.iter().find(|&&b| b as usize >= kv.n_blocks) {
                return Err(Error::Batch(format!(
                    "sequence {i}: block {b} outside the pool of {}",
                    kv.n_blocks
                )));
            }
        }
        // New tokens' K and V are stored in parallel, so no two may share a slot.
        let mut slots: Vec<usize> = seqs
            .iter()
            .flat_map(|s| {
                (s.start_pos..s.start_pos + s.tokens.len()).map(|p| {
                    s.block_table[p / kv.block_size] as usize * kv.block_size + p % kv.block_size
                })
            })
            .collect();
        slots.sort_unstable();
        if let Some(w) = slots.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Batch(format!(
                "two tokens of the batch would be stored in the same KV slot (block {}, slot {})",
                w[0] / kv.block_size,
                w[0] % kv.block_size
            )));
        }
        Ok(())
    }

    /// Runs the batch, writing each new token's K and V into its slot, and returns the
    /// logits asked for.
    pub fn forward(&self, kv: &mut KvCache, seqs: &[SeqInput]) -> Result<Logits> {
        let rows: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let out = self.forward_step(kv, seqs);
        if rows >= RELEASE_AFTER_ROWS {
            release_step_memory();
        }
        out
    }

    fn forward_step(&self, kv: &mut KvCache, seqs: &[SeqInput]) -> Result<Logits> {
        self.validate(kv, seqs)?;
        let c = &self.config;
        let pool = &*self.pool;
        let (d, qd, kvd, hd) = (c.n_embd, c.q_dim(), c.kv_dim(), c.head_dim);
        let mut rows: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        let mut x = vec![0f32; rows * d];
        let mut pos = Vec::with_capacity(rows);
        let mut r = 0;
        for s in seqs {
            for (i, &t) in s.tokens.iter().enumerate() {
                let row = &mut x[r * d..(r + 1) * d];
                self.embd.row_f32(t as usize, row);
                if let Some(scale) = c.graph.embd_scale {
                    row.iter_mut().for_each(|v| *v *= scale);
                }
                pos.push(s.start_pos + i);
                r += 1;
            }
        }
        // One angle table per row for each distinct rope (windowed layers may have their
        // own base), and which of them each layer uses.
        let mut ropes: Vec<RopeParams> = vec![c.rope];
        if let Some(sw) = &c.sliding_window {
            if sw.rope != c.rope {
                ropes.push(sw.rope);
            }
        }
        let layer_rope = |li: usize| usize::from(ropes.len() > 1 && c.is_windowed(li));
        let tables: Vec<Vec<Vec<(f32, f32)>>> = ropes
            .iter()
            .map(|rp| {
                pos.iter()
                    .map(|&p| {
                        let mut t = Vec::with_capacity(rp.dims / 2);
                        ops::rope_table(p, rp, self.rope_factors.as_deref(), &mut t);
                        t
                    })
                    .collect()
            })
            .collect();
        let mut slots = Vec::with_capacity(rows);
        for s in seqs {
            slots.extend(
                (0..s.tokens.len()).map(|i| kv.block_and_slot(s.block_table, s.start_pos + i)),
            );
        }
        let mut first_row = 0;
        let mut attn_seqs: Vec<AttnSeq> = seqs
            .iter()
            .map(|s| {
                let a = AttnSeq {
                    block_table: s.block_table,
                    first_row,
                    n_rows: s.tokens.len(),
                    first_pos: s.start_pos,
                };
                first_row += s.tokens.len();
                a
            })
            .collect();

        let mut want = Vec::new();
        let mut r = 0;
        for (si, s) in seqs.iter().enumerate() {
            let n = s.tokens.len();
            match s.logits {
                WantLogits::None => {}
                WantLogits::Last if n > 0 => want.push((si, s.start_pos + n - 1, r + n - 1)),
                WantLogits::Last => {}
                WantLogits::All => want.extend((0..n).map(|i| (si, s.start_pos + i, r + i))),
                WantLogits::From(f) => {
                    want.extend((f.min(n)..n).map(|i| (si, s.start_pos + i, r + i)))
                }
            }
            r += n;
        }
        // The last layer's attention and FFN matter only for the rows whose logits are
        // wanted (their K and V, stored from its input, serve later tokens): a prefill
        // chunk drops the rest there.
        let last_rows: Vec<usize> = want.iter().map(|w| w.2).collect();
        let mut last_seqs: Vec<AttnSeq> = want
            .iter()
            .enumerate()
            .map(|(i, &(si, p, _))| AttnSeq {
                block_table: seqs[si].block_table,
                first_row: i,
                n_rows: 1,
                first_pos: p,
            })
            .collect();

        let mut compacted = false;
        let qkv_w = qd + 2 * kvd;
        let mut xn = vec![0f32; rows * d];
        let mut qkv = vec![0f32; rows * qkv_w];
        let mut q = vec![0f32; rows * qd];
        let mut att = vec![0f32; rows * qd];
        let mut proj = vec![0f32; rows * d];
        let ffn_rows = rows.min(FFN_ROWS);
        let mut gu = vec![0f32; ffn_rows * 2 * c.n_ff];
        let mut h = vec![0f32; ffn_rows * c.n_ff];
        let g = &c.graph;

        // Each residual add runs in one pass with what precedes it (the projection's
        // bias and post-norm, where the architecture has them) and the norm that
        // follows it: one pool region instead of several.
        let add_then_norm = |x: &mut [f32],
                             xn: &mut [f32],
                             proj: &[f32],
                             bias: Option<&[f32]>,
                             post_norm: Option<&[f32]>,
                             norm: Option<&[f32]>| {
            pool.for_row_pairs(x, d, xn, d, &|r, row, out| {
                let p = &proj[r * d..(r + 1) * d];
                if bias.is_none() && post_norm.is_none() {
                    for (a, b) in row.iter_mut().zip(p) {
                        *a += b;
                    }
                } else {
                    // `out` is free until the norm below writes it.
                    out.copy_from_slice(p);
                    if let Some(b) = bias {
                        out.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                    }
                    if let Some(w) = post_norm {
                        ops::rmsnorm_in_place(out, w, c.rms_eps);
                    }
                    for (a, b) in row.iter_mut().zip(out.iter()) {
                        *a += b;
                    }
                }
                if let Some(w) = norm {
                    ops::rmsnorm(row, w, c.rms_eps, out);
                }
            });
        };
        if let Some(first) = self.layers.first() {
            pool.for_rows(&mut xn, d, &|r, out| {
                ops::rmsnorm(&x[r * d..(r + 1) * d], &first.attn_norm, c.rms_eps, out)
            });
        }
        for (li, layer) in self.layers.iter().enumerate() {
            stacked_matmul(pool, &layer.qkv, &xn, rows, &mut qkv);
            let layer_kv = &mut kv.layers[li];
            let layout = kv.layout;
            {
                let writer = layer_kv.writer(layout);
                let rope = &tables[layer_rope(li)];
                pool.for_row_pairs(&mut qkv, qkv_w, &mut q, qd, &|r, row, q_row| {
                    if let Some(b) = &layer.qkv_bias {
                        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                    }
                    if let Some(w) = &layer.q_norm {
                        ops::rmsnorm_pieces(&mut row[..qd], hd, w, c.rms_eps);
                    }
                    if let Some(w) = &layer.k_norm {
                        ops::rmsnorm_pieces(&mut row[qd..qd + kvd], hd, w, c.rms_eps);
                    }
                    g.rope_style.apply(&mut row[..qd + kvd], hd, &rope[r]);
                    q_row.copy_from_slice(&row[..qd]);
                    let (block, slot) = slots[r];
                    // SAFETY: `validate` checked that no two rows share a (block, slot).
                    unsafe { writer.store(block, slot, &row[qd..qd + kvd], &row[qd + kvd..]) };
                });
            }
            if li + 1 == self.layers.len() && last_rows.len() < rows {
                compacted = true;
                rows = last_rows.len();
                gather_rows(&mut x, d, &last_rows);
                gather_rows(&mut q, qd, &last_rows);
                att.truncate(rows * qd);
                xn.truncate(rows * d);
                proj.truncate(rows * d);
                attn_seqs = std::mem::take(&mut last_seqs);
            }
            let paged = layer_kv.paged(layout);
            let params = AttnParams {
                scale: c.attn_scale,
                softcap: c.attn_softcap,
                window: c
                    .sliding_window
                    .as_ref()
                    .filter(|_| c.is_windowed(li))
                    .map(|s| s.window),
            };
            ops::attention(pool, &q, c.n_heads, &paged, &attn_seqs, &params, &mut att);
            matmul(pool, &layer.wo, &att, rows, &mut proj);
            add_then_norm(
                &mut x,
                &mut xn,
                &proj,
                layer.wo_bias.as_deref(),
                layer.attn_post_norm.as_deref(),
                Some(&layer.ffn_norm),
            );
            let ff = c.n_ff;
            for r0 in (0..rows).step_by(FFN_ROWS) {
                let n = (rows - r0).min(FFN_ROWS);
                let (gu, h) = (&mut gu[..n * 2 * ff], &mut h[..n * ff]);
                stacked_matmul(pool, &layer.gate_up, &xn[r0 * d..(r0 + n) * d], n, gu);
                if let Some(b) = &layer.gate_up_bias {
                    pool.for_rows(gu, 2 * ff, &|_, row| {
                        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                    });
                }
                let gu = &*gu;
                pool.for_rows(h, ff, &|r, out| {
                    let (gate, up) = gu[r * 2 * ff..(r + 1) * 2 * ff].split_at(ff);
                    out.copy_from_slice(gate);
                    match g.activation {
                        Activation::Silu => ops::silu_mul(out, up),
                        Activation::GeluTanh => ops::gelu_mul(out, up),
                    }
                });
                matmul(pool, &layer.down, h, n, &mut proj[r0 * d..(r0 + n) * d]);
            }
            let next = self.layers.get(li + 1).map(|l| &l.attn_norm[..]);
            add_then_norm(
                &mut x,
                &mut xn,
                &proj,
                layer.down_bias.as_deref(),
                layer.ffn_post_norm.as_deref(),
                next,
            );
        }

        let mut normed = vec![0f32; want.len() * d];
        for (i, &(_, _, row)) in want.iter().enumerate() {
            let row = if compacted { i } else { row };
            ops::rmsnorm(
                &x[row * d..(row + 1) * d],
                &self.out_norm,
                c.rms_eps,
                &mut normed[i * d..(i + 1) * d],
            );
        }
        let vocab = c.vocab_size;
        let mut data = vec![0f32; want.len() * vocab];
        matmul(pool, self.lm_head(), &normed, want.len(), &mut data);
        if self.output_bias.is_some() || g.final_softcap.is_some() {
            pool.for_rows(&mut data, vocab, &|_, row| {
                if let Some(b) = &self.output_bias {
                    row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                }
                if let Some(cap) = g.final_softcap {
                    let inv = 1.0 / cap;
                    row.iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
                }
            });
        }
        Ok(Logits {
            data,
            vocab,
            rows: want.iter().map(|&(s, p, _)| (s, p)).collect(),
        })
    }
}

/// Rows the feed-forward block takes at a time: its two buffers (rows × 3 × n_ff floats,
/// 48 MiB for a 512-row step of the 1B shape) are the largest of a step, and they sat on
/// top of a full KV cache whenever a prefill chunk ran beside it (peak RSS 1.141× file +
/// KV on the 1B shape; 1.092× with 128 rows, 1.109× with 256). The matmuls measured as
/// fast at 128 rows as at 512 (`matmul_speed`, Q4_K and Q6_K at the 1B shape's gate/up
/// and down sizes); whole pp512 came out ~5% lower in interleaved runs, inside this
/// host's noise. Results are the same: the kernels are batch-invariant.
const FFN_ROWS: usize = 128;

/// Steps of at least this many rows (prefill chunks; decode batches are smaller) give
/// their scratch memory back when they end.
const RELEASE_AFTER_ROWS: usize = 128;

/// A prefill step's buffers (70 MiB for 512 rows of the 1B shape) are freed when it
/// ends, but glibc keeps what it served from its heaps resident, and the activation codes
/// are kept for the next step; measured on the 1B shape, that held 50 MiB more at the KV
/// cache's peak (decode) than decode itself needs. Returning both costs the next large
/// step a few thousand page faults, well under 1% of its time.
fn release_step_memory() {
    kernels::matmul::release_activation_buffers();
    crate::heap::return_free_pages();
}
