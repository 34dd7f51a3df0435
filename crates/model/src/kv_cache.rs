use crate::Config;
use kernels::ops::KvLayout;

/// The paged KV cache: for each layer, K and V storage of `n_blocks` blocks of
/// `block_size` token slots. Which block holds which positions is the caller's business
/// (block tables); this type only owns the memory.
pub struct KvCache {
    pub block_size: usize,
    pub n_blocks: usize,
    pub(crate) layers: Vec<(Vec<f32>, Vec<f32>)>,
    pub(crate) layout: KvLayout,
}

impl KvCache {
    /// Room for at least `tokens` positions, rounded up to whole blocks.
    pub fn new(cfg: &Config, tokens: usize, block_size: usize) -> Self {
        let block_size = block_size.max(1);
        let n_blocks = tokens.div_ceil(block_size).max(1);
        let kv_dim = cfg.kv_dim();
        let per_layer = n_blocks * block_size * kv_dim;
        // vec![0.0; n] maps zeroed pages lazily, so an unused pool costs no memory.
        let layers = (0..cfg.n_layers)
            .map(|_| (vec![0f32; per_layer], vec![0f32; per_layer]))
            .collect();
        Self {
            block_size,
            n_blocks,
            layers,
            layout: KvLayout {
                block_size,
                n_kv_heads: cfg.n_kv_heads,
                head_dim: cfg.head_dim,
            },
        }
    }

    pub fn capacity_tokens(&self) -> usize {
        self.n_blocks * self.block_size
    }

    /// Copies the first `n` slots of every layer's K and V from block `src` to `dst`.
    pub fn copy_block_prefix(&mut self, src: usize, dst: usize, n: usize) {
        assert!(src < self.n_blocks && dst < self.n_blocks && n <= self.block_size);
        for (k, v) in &mut self.layers {
            self.layout.copy_prefix(k, v, src, dst, n);
        }
    }

    /// The block and the slot within it that hold position `pos`.
    pub(crate) fn block_and_slot(&self, table: &[u32], pos: usize) -> (usize, usize) {
        (table[pos / self.block_size] as usize, pos % self.block_size)
    }
}
