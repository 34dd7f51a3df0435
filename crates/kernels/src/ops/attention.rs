//! Causal attention of query rows over a paged KV cache.
//!
//! K and V are stored as 16-bit codes with one f32 scale per (token, KV head):
//! `value ≈ code * scale`, `scale = amax / 32767` over the head's `head_dim` values, so
//! each value is within `amax / 65534` of the f32 it came from (f16 would be off by up to
//! 1/2048 of each value). Attention over a long context is bound by reading the cache;
//! two bytes per value instead of four halve that.
//!
//! K is stored transposed within each block (`[kv_head][dim][slot]`), so the scores of 16
//! consecutive slots are one vector of sequential FMA chains over the head dimension —
//! no horizontal sums — and the query heads that share a KV head (GQA) read each K and V
//! vector once. V is head-major too but slot-major within the head
//! (`[kv_head][slot][dim]`): each position adds a weighted row to the output, and one
//! head's V in a block is one contiguous run, as its K is. (With the heads' rows
//! interleaved slot by slot, a task reading one head left most of every page it touched
//! to the other heads, and two threads' attention over 8k positions took 1.1–1.5 times
//! as long.)
//! Scales of both are `[kv_head][slot]` within a block.

use super::exp_inplace;
use crate::pool::ThreadPool;
use std::cell::RefCell;

/// Largest code magnitude.
const CODE_MAX: f32 = 32767.0;

/// Codes past the last block, so a kernel may load 16 lanes from any slot of any block
/// (the lanes past the block are masked off afterwards).
const PAD: usize = 16;

/// Where each K and V value of one layer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvLayout {
    /// Codes per block in each of K and V.
    pub fn block_len(&self) -> usize {
        self.block_size * self.n_kv_heads * self.head_dim
    }

    /// Scales per block in each of K and V.
    pub fn block_scales(&self) -> usize {
        self.block_size * self.n_kv_heads
    }

    /// Index of K's dimension 0 for (`block`, `kv_head`) at `slot`; dimension `d` is
    /// `block_size * d` further.
    #[inline]
    pub fn k_index(&self, block: usize, kv_head: usize, slot: usize) -> usize {
        (block * self.n_kv_heads + kv_head) * self.head_dim * self.block_size + slot
    }

    /// Index of V's `head_dim` contiguous values for (`block`, `slot`, `kv_head`).
    #[inline]
    pub fn v_index(&self, block: usize, slot: usize, kv_head: usize) -> usize {
        ((block * self.n_kv_heads + kv_head) * self.block_size + slot) * self.head_dim
    }

    /// Index of the K and V scales of (`block`, `kv_head`, `slot`).
    #[inline]
    pub fn scale_index(&self, block: usize, kv_head: usize, slot: usize) -> usize {
        (block * self.n_kv_heads + kv_head) * self.block_size + slot
    }
}

/// One layer's K and V for `n_blocks` blocks, as `KvLayout` places them.
pub struct LayerKv {
    pub k: Vec<i16>,
    pub v: Vec<i16>,
    pub k_scale: Vec<f32>,
    pub v_scale: Vec<f32>,
}

/// Codes of one head's values, handed to `put(d, code)`, and their scale. A head whose
/// values are all zero gets scale 0; one holding a NaN or an infinity gets a NaN scale,
/// which carries into the scores the way the f32 values would have.
fn quantize_head(x: &[f32], put: impl FnMut(usize, i16)) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() != crate::Isa::Scalar {
        // SAFETY: avx2 and fma were detected.
        return unsafe { quantize_head_avx2(x, put) };
    }
    quantize_head_body(x, put)
}

/// The same IEEE arithmetic with SSE4.1's rounding instruction in reach; without it
/// `round_ties_even` is a library call per value.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_head_avx2(x: &[f32], put: impl FnMut(usize, i16)) -> f32 {
    quantize_head_body(x, put)
}

#[inline(always)]
fn quantize_head_body(x: &[f32], mut put: impl FnMut(usize, i16)) -> f32 {
    let amax = x.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let finite = x.iter().all(|v| v.is_finite());
    let inv = if finite && amax > 0.0 {
        CODE_MAX / amax
    } else {
        0.0
    };
    for (d, &v) in x.iter().enumerate() {
        put(
            d,
            (v * inv).round_ties_even().clamp(-CODE_MAX, CODE_MAX) as i16,
        );
    }
    if finite {
        amax / CODE_MAX
    } else {
        f32::NAN
    }
}

impl LayerKv {
    /// Zeroed storage (mapped lazily by the allocator, so an unused pool costs no memory).
    pub fn new(layout: &KvLayout, n_blocks: usize) -> Self {
        let codes = n_blocks * layout.block_len() + PAD;
        let scales = n_blocks * layout.block_scales();
        Self {
            k: vec![0; codes],
            v: vec![0; codes],
            k_scale: vec![0.0; scales],
            v_scale: vec![0.0; scales],
        }
    }

    pub fn n_blocks(&self, layout: &KvLayout) -> usize {
        self.k_scale.len() / layout.block_scales()
    }

    pub fn paged(&self, layout: KvLayout) -> PagedKv<'_> {
        PagedKv {
            k: &self.k,
            v: &self.v,
            k_scale: &self.k_scale,
            v_scale: &self.v_scale,
            layout,
        }
    }

    /// Stores one token's K and V rows (`n_kv_heads * head_dim` each) at `slot` of `block`.
    pub fn store(&mut self, l: &KvLayout, block: usize, slot: usize, k_row: &[f32], v_row: &[f32]) {
        // SAFETY: `&mut self` excludes every other writer.
        unsafe { self.writer(*l).store(block, slot, k_row, v_row) }
    }

    /// A handle through which several threads store tokens at once, each into slots no
    /// other thread writes.
    pub fn writer(&mut self, layout: KvLayout) -> KvWriter<'_> {
        KvWriter {
            n_blocks: self.n_blocks(&layout),
            k: self.k.as_mut_ptr(),
            v: self.v.as_mut_ptr(),
            k_scale: self.k_scale.as_mut_ptr(),
            v_scale: self.v_scale.as_mut_ptr(),
            layout,
            _kv: std::marker::PhantomData,
        }
    }

    /// Copies slots `0..n` of block `src` to the same slots of block `dst`.
    pub fn copy_prefix(&mut self, l: &KvLayout, src: usize, dst: usize, n: usize) {
        assert!(n <= l.block_size && src.max(dst) < self.n_blocks(l));
        for h in 0..l.n_kv_heads {
            for d in 0..l.head_dim {
                let (from, to) = (l.k_index(src, h, 0), l.k_index(dst, h, 0));
                let off = d * l.block_size;
                self.k.copy_within(from + off..from + off + n, to + off);
            }
            let (from, to) = (l.scale_index(src, h, 0), l.scale_index(dst, h, 0));
            self.k_scale.copy_within(from..from + n, to);
            self.v_scale.copy_within(from..from + n, to);
            let (from, to) = (l.v_index(src, 0, h), l.v_index(dst, 0, h));
            self.v.copy_within(from..from + n * l.head_dim, to);
        }
    }
}

/// Shared write access to one layer's storage; see `LayerKv::writer`.
pub struct KvWriter<'a> {
    k: *mut i16,
    v: *mut i16,
    k_scale: *mut f32,
    v_scale: *mut f32,
    n_blocks: usize,
    layout: KvLayout,
    _kv: std::marker::PhantomData<&'a mut LayerKv>,
}

// SAFETY: `store` writes only the codes and scales of its own (block, slot), and its
// contract forbids two concurrent stores to the same one.
unsafe impl Sync for KvWriter<'_> {}

impl KvWriter<'_> {
    /// Stores one token's K and V rows (`n_kv_heads * head_dim` each) at `slot` of `block`.
    ///
    /// # Safety
    /// No other thread may store to the same (`block`, `slot`) at the same time.
    pub unsafe fn store(&self, block: usize, slot: usize, k_row: &[f32], v_row: &[f32]) {
        let l = &self.layout;
        let (hd, bs) = (l.head_dim, l.block_size);
        assert!(block < self.n_blocks && slot < bs);
        assert!(k_row.len() >= l.n_kv_heads * hd && v_row.len() >= l.n_kv_heads * hd);
        for h in 0..l.n_kv_heads {
            let at = l.scale_index(block, h, slot);
            let kb = l.k_index(block, h, slot);
            // SAFETY (all four writes): indices of (block, h, slot) lie inside the storage
            // (block < n_blocks, asserted) and belong to this (block, slot) alone.
            let ks = quantize_head(&k_row[h * hd..(h + 1) * hd], |d, c| unsafe {
                *self.k.add(kb + d * bs) = c;
            });
            let vb = l.v_index(block, slot, h);
            let vs = quantize_head(&v_row[h * hd..(h + 1) * hd], |d, c| unsafe {
                *self.v.add(vb + d) = c;
            });
            unsafe {
                *self.k_scale.add(at) = ks;
                *self.v_scale.add(at) = vs;
            }
        }
    }
}

/// One layer's K and V storage, laid out as `layout` says.
pub struct PagedKv<'a> {
    pub k: &'a [i16],
    pub v: &'a [i16],
    pub k_scale: &'a [f32],
    pub v_scale: &'a [f32],
    pub layout: KvLayout,
}

/// How scores are formed and which keys a query sees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    /// Multiplies `q·k`.
    pub scale: f32,
    /// Gemma 2's soft cap: a score `s` becomes `cap * tanh(s / cap)` before the softmax.
    pub softcap: Option<f32>,
    /// Sliding window: a query at position `p` sees keys `p - window + 1 ..= p` only.
    pub window: Option<usize>,
}

impl AttnParams {
    /// Plain causal attention with `scale`.
    pub fn scaled(scale: f32) -> Self {
        Self {
            scale,
            softcap: None,
            window: None,
        }
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

impl<'a> AttnSeq<'a> {
    /// The work of query row `i` on KV head `kv_head`.
    fn head_group(
        &self,
        kv: &'a PagedKv<'a>,
        i: usize,
        kv_head: usize,
        params: &AttnParams,
    ) -> HeadGroup<'a> {
        let n_ctx = self.first_pos + i + 1;
        HeadGroup {
            kv,
            table: self.block_table,
            kv_head,
            n_ctx,
            start: params.window.map_or(0, |w| n_ctx.saturating_sub(w.max(1))),
            scale: params.scale,
            softcap: params.softcap,
        }
    }
}

/// One task's work: query heads `heads` (all on KV head `kv_head`) of one row over
/// positions `start..n_ctx`.
pub(crate) struct HeadGroup<'a> {
    pub kv: &'a PagedKv<'a>,
    pub table: &'a [u32],
    pub kv_head: usize,
    pub n_ctx: usize,
    /// First visible position (0 unless a sliding window hides older keys).
    pub start: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
}

impl HeadGroup<'_> {
    /// Checks that every block the context touches lies inside the storage, so kernels
    /// may index without further checks.
    fn check(&self) {
        let l = &self.kv.layout;
        let blocks = self.n_ctx.div_ceil(l.block_size);
        assert!(blocks <= self.table.len(), "block table too short");
        let n_blocks = self.kv.k_scale.len() / l.block_scales();
        let codes = n_blocks * l.block_len() + PAD;
        assert!(self.kv.k.len() >= codes && self.kv.v.len() >= codes);
        assert!(
            self.kv.v_scale.len() >= n_blocks * l.block_scales() && self.kv_head < l.n_kv_heads
        );
        assert!(
            self.table[..blocks]
                .iter()
                .all(|&b| (b as usize) < n_blocks),
            "block outside the KV storage"
        );
    }
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

struct OutPtr(*mut f32);
// SAFETY: each task writes disjoint (row, head) slices of `out`.
unsafe impl Sync for OutPtr {}

/// Query heads per task: those sharing a KV head, at most as many as keep the output
/// accumulators in registers.
fn heads_per_task(group: usize, head_dim: usize) -> usize {
    let most = match head_dim {
        0..=64 => 4,
        65..=128 => 2,
        _ => 1,
    };
    (1..=most.min(group))
        .rev()
        .find(|c| group.is_multiple_of(*c))
        .unwrap_or(1)
}

/// `out[row, head] = softmax(q·Kᵀ · scale) · V` over the row's causal context (within
/// the window, scores soft-capped when `params` say so), with query heads mapped onto
/// KV heads by grouping (GQA). `q` and `out` have `n_heads * head_dim` columns.
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    n_heads: usize,
    kv: &PagedKv,
    seqs: &[AttnSeq],
    params: &AttnParams,
    out: &mut [f32],
) {
    let l = kv.layout;
    let hd = l.head_dim;
    let width = n_heads * hd;
    assert!(n_heads.is_multiple_of(l.n_kv_heads) && q.len() >= out.len());
    let group = n_heads / l.n_kv_heads;
    let per = heads_per_task(group, hd);
    let chunks = n_heads / per;
    assert!(
        seqs.iter()
            .all(|seq| seq.n_rows == 0 || (seq.first_row + seq.n_rows) * width <= out.len()),
        "query rows outside the output"
    );
    // Consecutive rows of a sequence go two to a task where the pair kernel covers the
    // head shape and no window hides keys (both rows then see keys from position 0).
    let step = if params.window.is_none() && pair_kernel(per, hd) {
        2
    } else {
        1
    };
    // (sequence, first row, rows) of each task.
    let units: Vec<(usize, usize, usize)> = seqs
        .iter()
        .enumerate()
        .flat_map(|(s, seq)| {
            (0..seq.n_rows)
                .step_by(step)
                .map(move |i| (s, i, step.min(seq.n_rows - i)))
        })
        .collect();
    let optr = OutPtr(out.as_mut_ptr());
    let optr = &optr;
    pool.run(units.len() * chunks, &|t| {
        let (s, i, rows) = units[t / chunks];
        let h0 = (t % chunks) * per;
        let seq = &seqs[s];
        let heads = |i: usize| {
            let row = seq.first_row + i;
            let qs = &q[row * width + h0 * hd..row * width + (h0 + per) * hd];
            // SAFETY: (row, heads h0..h0+per) belong to this task alone and lie inside
            // `out` (asserted above).
            let o = unsafe {
                std::slice::from_raw_parts_mut(optr.0.add(row * width + h0 * hd), per * hd)
            };
            (qs, o)
        };
        // The last row's task: with two rows, the first sees one position fewer.
        let task = seq.head_group(kv, i + rows - 1, h0 / group, params);
        task.check();
        SCORES.with(|sc| {
            let sc = &mut sc.borrow_mut();
            if rows == 2 {
                let ((qa, oa), (qb, ob)) = (heads(i), heads(i + 1));
                attend_two(&task, [qa, qb], sc, [oa, ob]);
            } else {
                let (qs, o) = heads(i);
                attend(&task, qs, sc, o);
            }
        });
    });
}

/// Whether `attend_two` has a kernel for `per` heads of `head_dim`.
fn pair_kernel(per: usize, head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() == crate::Isa::Avx512 {
        return matches!((per, head_dim), (1..=4, 64) | (1..=2, 128));
    }
    false
}

/// Two consecutive rows' heads: `qs[1]` over the task's context, `qs[0]` over all of it
/// but the last position (see `x86::attend_pair`).
fn attend_two(task: &HeadGroup, qs: [&[f32]; 2], scores: &mut Vec<f32>, out: [&mut [f32]; 2]) {
    #[cfg(target_arch = "x86_64")]
    {
        let hd = task.kv.layout.head_dim;
        macro_rules! go {
            ($g:literal, $g2:literal, $nv:literal, $half:literal, $c:literal) => {
                // SAFETY: avx512f detected (`pair_kernel`); `check` validated every block
                // index; no window, so the task starts at 0, and the second row's
                // context holds at least two positions.
                unsafe { super::x86::attend_pair::<$g, $g2, $nv, $half, $c>(task, qs, scores, out) }
            };
        }
        match (qs[0].len() / hd, hd) {
            (4, 64) => return go!(4, 8, 4, 2, 2),
            (3, 64) => return go!(3, 6, 4, 2, 2),
            (2, 64) => return go!(2, 4, 4, 4, 4),
            (1, 64) => return go!(1, 2, 4, 4, 4),
            (2, 128) => return go!(2, 4, 8, 4, 4),
            (1, 128) => return go!(1, 2, 8, 8, 4),
            _ => {}
        }
    }
    unreachable!("attend_two without a pair kernel for this head shape")
}

/// The heads of `qs` (consecutive `head_dim` slices) attend over the task's context.
fn attend(task: &HeadGroup, qs: &[f32], scores: &mut Vec<f32>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa() == crate::Isa::Avx512 {
        let hd = task.kv.layout.head_dim;
        let g = qs.len() / hd;
        macro_rules! go {
            ($g:literal, $nv:literal) => {
                // SAFETY: avx512f detected; `check` validated every block index.
                unsafe { super::x86::attend_group::<$g, $nv>(task, qs, scores, out) }
            };
        }
        match (g, hd) {
            (1, 32) => return go!(1, 2),
            (2, 32) => return go!(2, 2),
            (3, 32) => return go!(3, 2),
            (4, 32) => return go!(4, 2),
            (1, 64) => return go!(1, 4),
            (2, 64) => return go!(2, 4),
            (3, 64) => return go!(3, 4),
            (4, 64) => return go!(4, 4),
            (1, 96) => return go!(1, 6),
            (2, 96) => return go!(2, 6),
            (1, 128) => return go!(1, 8),
            (2, 128) => return go!(2, 8),
            (1, 256) => return go!(1, 16),
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if crate::isa() == crate::Isa::Avx2 {
        let hd = task.kv.layout.head_dim;
        macro_rules! go {
            ($g:literal, $nv:literal, $c:literal, $dv:literal) => {
                // SAFETY: avx2 and fma detected; `check` validated every block index.
                unsafe { super::avx2::attend_group::<$g, $nv, $c, $dv>(task, qs, scores, out) }
            };
        }
        // Chunks `C` and V vectors per pass `DV` keep the `G * C` score and `G * DV`
        // output accumulators, the loaded codes and a broadcast within 16 registers.
        match (qs.len() / hd, hd) {
            (1, 32) => return go!(1, 4, 4, 4),
            (2, 32) => return go!(2, 4, 4, 4),
            (3, 32) => return go!(3, 4, 3, 2),
            (4, 32) => return go!(4, 4, 2, 2),
            (1, 48) => return go!(1, 6, 4, 6),
            (2, 48) => return go!(2, 6, 4, 3),
            (1, 64) => return go!(1, 8, 4, 4),
            (2, 64) => return go!(2, 8, 4, 4),
            (3, 64) => return go!(3, 8, 3, 2),
            (4, 64) => return go!(4, 8, 2, 2),
            (1, 96) => return go!(1, 12, 4, 6),
            (2, 96) => return go!(2, 12, 4, 4),
            (1, 128) => return go!(1, 16, 4, 4),
            (2, 128) => return go!(2, 16, 4, 4),
            (1, 256) => return go!(1, 32, 4, 4),
            // SAFETY: avx2 and fma were detected.
            _ => return unsafe { reference_attend_avx2(task, qs, scores, out) },
        }
    }
    reference_attend(task, qs, scores, out);
}

/// The reference compiled for AVX2 and FMA, for head shapes without a kernel (`mul_add`
/// becomes one instruction instead of a libm call; the arithmetic is unchanged).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn reference_attend_avx2(
    task: &HeadGroup,
    qs: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    reference_attend(task, qs, scores, out)
}

/// The reference arithmetic: each score a sequential FMA chain of K codes over the head
/// dimension, times the K scale, times `scale` (then soft-capped); softmax over the
/// visible positions with the max subtracted and an f64 sum; the output a sequential sum
/// over positions of `fma(weight * v_scale, code, acc)`.
#[inline(always)]
pub(crate) fn reference_attend(
    task: &HeadGroup,
    qs: &[f32],
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let l = &task.kv.layout;
    let (hd, bs) = (l.head_dim, l.block_size);
    let (start, n_ctx) = (task.start, task.n_ctx);
    for (q, o) in qs.chunks_exact(hd).zip(out.chunks_exact_mut(hd)) {
        scores.clear();
        for p in start..n_ctx {
            let block = task.table[p / bs] as usize;
            let base = l.k_index(block, task.kv_head, p % bs);
            let mut acc = 0f32;
            for (d, &qd) in q.iter().enumerate() {
                acc = qd.mul_add(task.kv.k[base + d * bs] as f32, acc);
            }
            let ks = task.kv.k_scale[l.scale_index(block, task.kv_head, p % bs)];
            scores.push(acc * ks * task.scale);
        }
        if let Some(cap) = task.softcap {
            softcap(scores, cap);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for s in scores.iter_mut() {
            *s -= max;
        }
        exp_inplace(scores);
        let inv = (1.0 / sum8(scores)) as f32;
        o.fill(0.0);
        for (p, &w) in (start..).zip(scores.iter()) {
            let block = task.table[p / bs] as usize;
            let at = l.v_index(block, p % bs, task.kv_head);
            let a = w * inv * task.kv.v_scale[l.scale_index(block, task.kv_head, p % bs)];
            for (od, &vd) in o.iter_mut().zip(&task.kv.v[at..at + hd]) {
                *od = a.mul_add(vd as f32, *od);
            }
        }
    }
}

/// `s = cap * tanh(s / cap)`, as ggml computes it (a multiply by the reciprocal).
pub(crate) fn softcap(s: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in s {
        *v = (*v * inv).tanh() * cap;
    }
}

/// The softmax denominator in f64: eight interleaved partial sums (position `i` into
/// lane `i % 8`), then a fixed tree. A single running sum would be a chain of dependent
/// adds as long as the context.
pub(crate) fn sum8(x: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    for (i, &v) in x.iter().enumerate() {
        lanes[i % 8] += v as f64;
    }
    reduce8(lanes)
}

pub(crate) fn reduce8(l: [f64; 8]) -> f64 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// The scalar twin, for tests.
#[cfg(test)]
pub(crate) fn reference_attention(
    q: &[f32],
    n_heads: usize,
    kv: &PagedKv,
    seqs: &[AttnSeq],
    params: &AttnParams,
    out: &mut [f32],
) {
    let hd = kv.layout.head_dim;
    let width = n_heads * hd;
    let group = n_heads / kv.layout.n_kv_heads;
    let mut scores = Vec::new();
    for seq in seqs {
        for i in 0..seq.n_rows {
            let row = seq.first_row + i;
            for h in 0..n_heads {
                let task = seq.head_group(kv, i, h / group, params);
                let at = row * width + h * hd;
                reference_attend(&task, &q[at..at + hd], &mut scores, &mut out[at..at + hd]);
            }
        }
    }
}
