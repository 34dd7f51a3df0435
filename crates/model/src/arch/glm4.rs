//! `glm4` (GLM-4-0414, GLM-Z1): llama's layer plus RMSNorm of the attention and FFN
//! outputs before each residual add, a fused gate|up projection (`ffn_up` holds both,
//! gate first), and rope on interleaved pairs of the first `rope.dimension_count`
//! dimensions only (half of each head). Q/K/V may be fused or split, with biases.

use crate::config::Meta;
use crate::{Config, Error, Result};

pub(super) fn configure(m: &Meta, c: &mut Config) -> Result<()> {
    if m.f.get(&m.key("rope.dimension_sections")).is_some() {
        return Err(Error::Config(
            "glm4: multimodal rope sections (GLM-4V) are not supported".into(),
        ));
    }
    c.graph.post_norms = true;
    Ok(())
}
