//! `qwen2` (Qwen2, Qwen2.5) and `qwen3` (Qwen3): llama's layer with rope on split halves
//! (NeoX style). Qwen2 adds biases to Q, K and V (optional tensors, present in its
//! files); Qwen3 drops them and normalizes each head of Q and K (RMSNorm) before rope.

use crate::config::Meta;
use crate::{Config, Result};
use kernels::ops::RopeStyle;

pub(super) fn configure_qwen2(_m: &Meta, c: &mut Config) -> Result<()> {
    c.graph.rope_style = RopeStyle::Halves;
    Ok(())
}

pub(super) fn configure_qwen3(_m: &Meta, c: &mut Config) -> Result<()> {
    c.graph.rope_style = RopeStyle::Halves;
    c.graph.qk_norm = true;
    Ok(())
}
