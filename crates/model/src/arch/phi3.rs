//! `phi3` (Phi-3, Phi-3.5, Phi-4-mini): fused QKV and gate|up projections, rope on split
//! halves, LongRoPE's long/short per-pair factors and attention factor. llama.cpp turns
//! Phi's sliding window off (its files set it inconsistently); so does this engine.

use crate::arch::RopeFactors;
use crate::config::Meta;
use crate::{Config, Result};
use kernels::ops::RopeStyle;

pub(super) fn configure(_m: &Meta, c: &mut Config) -> Result<()> {
    c.graph.rope_style = RopeStyle::Halves;
    c.graph.rope_factors = RopeFactors::LongShort;
    Ok(())
}
