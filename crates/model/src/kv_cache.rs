use crate::Config;
use kernels::ops::{KvLayout, LayerKv};

/// The paged KV cache: for each layer, K and V storage (16-bit codes with a scale per
/// token and KV head) of `n_blocks` blocks of `block_size` token slots. Which block holds which positions is the caller's business
/// (block tables); this type only owns the memory.
pub struct KvCache {
    pub block_size: usize,
    pub n_blocks: usize,
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) layout: KvLayout,
}

impl KvCache {
    /// Room for at least `tokens` positions, rounded up to whole blocks.
    pub fn new(cfg: &Config, tokens: usize, block_size: usize) -> Self {
        let block_size = block_size.max(1);
        let n_blocks = tokens.div_ceil(block_size).max(1);
        let layout = KvLayout {
            block_size,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
        };
        let layers = (0..cfg.n_layers)
            .map(|_| LayerKv::new(&layout, n_blocks))
            .collect();
        Self {
            block_size,
            n_blocks,
            layers,
            layout,
        }
    }

    /// Bytes of K and V storage (codes and scales) over all layers.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| 2 * (l.k.len() + l.v.len()) + 4 * (l.k_scale.len() + l.v_scale.len()))
            .sum()
    }

    pub fn capacity_tokens(&self) -> usize {
        self.n_blocks * self.block_size
    }

    /// Copies the first `n` slots of every layer's K and V from block `src` to `dst`.
    pub fn copy_block_prefix(&mut self, src: usize, dst: usize, n: usize) {
        assert!(src < self.n_blocks && dst < self.n_blocks && n <= self.block_size);
        for layer in &mut self.layers {
            layer.copy_prefix(&self.layout, src, dst, n);
        }
    }

    /// The block and the slot within it that hold position `pos`.
    pub(crate) fn block_and_slot(&self, table: &[u32], pos: usize) -> (usize, usize) {
        (table[pos / self.block_size] as usize, pos % self.block_size)
    }
}
