//! Causal attention of query rows over a paged KV cache.

use super::{axpy, dot, exp_inplace};
use crate::pool::ThreadPool;
use std::cell::RefCell;

/// One layer's K and V storage: `[block][slot][kv_head][head_dim]`, f32.
pub struct PagedKv<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl PagedKv<'_> {
    #[inline]
    fn offset(&self, table: &[u32], pos: usize, kv_head: usize) -> usize {
        let block = table[pos / self.block_size] as usize;
        ((block * self.block_size + pos % self.block_size) * self.n_kv_heads + kv_head)
            * self.head_dim
    }
}

/// A run of consecutive query rows of one sequence.
pub struct AttnSeq<'a> {
    pub block_table: &'a [u32],
    /// Row of the first query in the `q`/`out` matrices.
    pub first_row: usize,
    /// Number of query rows.
    pub n_rows: usize,
    /// Position of the first query; row `i` sees keys `0..=first_pos + i`.
    pub first_pos: usize,
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct OutPtr(*mut f32);
// SAFETY: each task writes one disjoint (row, head) slice of `out`.
unsafe impl Sync for OutPtr {}

/// `out[row, head] = softmax(q·Kᵀ · scale) · V` over the row's causal context, with
/// query heads mapped onto KV heads by grouping (GQA). `q` and `out` have
/// `n_heads * head_dim` columns.
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    n_heads: usize,
    kv: &PagedKv,
    seqs: &[AttnSeq],
    scale: f32,
    out: &mut [f32],
) {
    let hd = kv.head_dim;
    let width = n_heads * hd;
    let group = n_heads / kv.n_kv_heads;
    let rows: Vec<(usize, usize)> = seqs
        .iter()
        .enumerate()
        .flat_map(|(s, seq)| (0..seq.n_rows).map(move |i| (s, i)))
        .collect();
    let optr = OutPtr(out.as_mut_ptr());
    let optr = &optr;
    let total = out.len();
    pool.run(rows.len() * n_heads, &|t| {
        let (s, i) = rows[t / n_heads];
        let h = t % n_heads;
        let seq = &seqs[s];
        let row = seq.first_row + i;
        let n_ctx = seq.first_pos + i + 1;
        let qv = &q[row * width + h * hd..row * width + (h + 1) * hd];
        let kvh = h / group;
        // SAFETY: (row, h) is unique to this task, so the slice is written by it alone.
        let o = unsafe { std::slice::from_raw_parts_mut(optr.0.add(row * width + h * hd), hd) };
        debug_assert!(row * width + (h + 1) * hd <= total);
        let offset = |p: usize| kv.offset(seq.block_table, p, kvh);
        SCORES.with(|sc| {
            let mut sc = sc.borrow_mut();
            #[cfg(target_arch = "x86_64")]
            if crate::isa() == crate::Isa::Avx512 && hd.is_multiple_of(16) && hd <= 256 {
                // SAFETY: avx512f detected; offsets come from the validated block table.
                unsafe {
                    super::x86::attend_head(qv, kv.k, kv.v, n_ctx, &offset, scale, &mut sc, o)
                };
                return;
            }
            sc.clear();
            for p in 0..n_ctx {
                let off = offset(p);
                sc.push(dot(qv, &kv.k[off..off + hd]) * scale);
            }
            let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for v in sc.iter_mut() {
                *v -= max;
            }
            exp_inplace(&mut sc);
            let sum: f64 = sc.iter().map(|&v| v as f64).sum();
            let inv = (1.0 / sum) as f32;
            o.fill(0.0);
            for (p, &w) in sc.iter().enumerate() {
                let off = offset(p);
                axpy(w * inv, &kv.v[off..off + hd], o);
            }
        });
    });
}
