//! `gemma2` and `gemma3`: embeddings scaled by sqrt(n_embd), GELU-gated FFN, RMSNorm of
//! the attention and FFN outputs before each residual add, rope on split halves, and
//! sliding-window attention on most layers (Gemma 2: every other one, from the first;
//! Gemma 3: five of every six). Gemma 2 soft-caps attention scores and final logits;
//! Gemma 3 normalizes each head of Q and K instead, and gives windowed layers their own
//! rope base (10 000, unscaled).
//!
//! The query scale is 1/sqrt(head_dim), except for the 27B models, which llama.cpp
//! recognizes by their layer count (46 for Gemma 2, 62 for Gemma 3) and scales by
//! 1/sqrt(n_embd / n_heads), as Google's reference does.

use crate::arch::Activation;
use crate::config::{Meta, SlidingWindow};
use crate::{Config, Error, Result};
use kernels::ops::{RopeParams, RopeStyle};

fn common(c: &mut Config, layers_27b: usize) {
    c.graph.rope_style = RopeStyle::Halves;
    c.graph.post_norms = true;
    c.graph.activation = Activation::GeluTanh;
    c.graph.embd_scale = Some((c.n_embd as f32).sqrt());
    let per_head = if c.n_layers == layers_27b {
        c.n_embd / c.n_heads
    } else {
        c.head_dim
    };
    c.attn_scale = 1.0 / (per_head as f32).sqrt();
}

/// Which layers are windowed: `{arch}.attention.sliding_window_pattern` as an array of
/// booleans, or as a period `n` (layer `i` is windowed unless `i % n == n - 1`).
fn window_layers(m: &Meta, n_layers: usize, default_period: usize) -> Result<Vec<bool>> {
    let key = m.key("attention.sliding_window_pattern");
    let value = m.f.get(&key);
    if let Some(arr) = value.and_then(|v| v.as_array()) {
        if arr.len() < n_layers {
            return Err(Error::Config(format!(
                "{key} has {} entries for {n_layers} layers",
                arr.len()
            )));
        }
        return arr[..n_layers]
            .iter()
            .map(|b| {
                b.as_bool()
                    .ok_or_else(|| Error::Config(format!("{key} holds a non-boolean")))
            })
            .collect();
    }
    match value {
        Some(v) => {
            let n = v
                .as_u64()
                .ok_or_else(|| Error::Config(format!("{key} is {}", v.type_name())))?
                as usize;
            Ok(period_pattern(n, n_layers))
        }
        None => Ok(period_pattern(default_period, n_layers)),
    }
}

fn period_pattern(n: usize, n_layers: usize) -> Vec<bool> {
    (0..n_layers).map(|i| n == 0 || i % n < n - 1).collect()
}

pub(super) fn configure_gemma2(m: &Meta, c: &mut Config) -> Result<()> {
    common(c, 46);
    c.attn_softcap = Some(m.f64_opt("attn_logit_softcapping").unwrap_or(50.0) as f32);
    c.graph.final_softcap = Some(m.f64_opt("final_logit_softcapping").unwrap_or(30.0) as f32);
    let window = m.usize_or("attention.sliding_window", 4096)?;
    let rope = RopeParams {
        base: m.f64_opt("rope.freq_base_swa").unwrap_or(c.rope.base),
        ..c.rope
    };
    c.sliding_window = Some(SlidingWindow {
        window,
        layers: window_layers(m, c.n_layers, 2)?,
        rope,
    });
    Ok(())
}

pub(super) fn configure_gemma3(m: &Meta, c: &mut Config) -> Result<()> {
    common(c, 62);
    c.graph.qk_norm = true;
    c.graph.final_softcap = m
        .f64_opt("final_logit_softcapping")
        .filter(|&v| v != 0.0)
        .map(|v| v as f32);
    if let Some(window) = m.u64_opt("attention.sliding_window")?.filter(|&w| w > 0) {
        let rope = RopeParams {
            base: m.f64_opt("rope.freq_base_swa").unwrap_or(10000.0),
            freq_scale: 1.0,
            ..c.rope
        };
        c.sliding_window = Some(SlidingWindow {
            window: window as usize,
            layers: window_layers(m, c.n_layers, 6)?,
            rope,
        });
    }
    Ok(())
}
