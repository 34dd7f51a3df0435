//! `llama` (Llama 1-3.x, Mistral 7B/Nemo, SmolLM2, and every model converted as llama):
//! the base graph. Rope on interleaved pairs over the whole head, optional Llama 3.1
//! frequency factors, optional biases.

use crate::config::{Meta, SlidingWindow};
use crate::{Config, Error, Result};

pub(super) fn configure(m: &Meta, c: &mut Config) -> Result<()> {
    if c.n_rot != c.head_dim {
        // llama.cpp refuses these files too: the llama graph rotates whole heads.
        return Err(Error::Config(format!(
            "llama: rope dimension {} must equal the head size {}",
            c.n_rot, c.head_dim
        )));
    }
    // Mistral 7B v0.1 was trained with a 4096-token window. llama.cpp ignores the key for
    // this architecture; where a file sets it, the window is what the model expects.
    if let Some(w) = m.u64_opt("attention.sliding_window")?.filter(|&w| w > 0) {
        c.sliding_window = Some(SlidingWindow {
            window: w as usize,
            layers: vec![true; c.n_layers],
            rope: c.rope,
        });
    }
    Ok(())
}
