//! The shapes `autoglm synth` knows: real model sizes for benchmarks (llama-quantize's
//! type mixes) and small models of each architecture's real layout for the numerics
//! tests against llama.cpp (`test-*`: a few layers, real head sizes and grouping, every
//! optional tensor and metadata key the architecture reads).

use super::{Role, RopeFactorTensors, Spec, TypePlan};
use gguf::{GgmlType, Value};

/// Every shape, with the vocab GGUF (from llama.cpp's `models/`) it is meant for.
pub const SHAPES: &[(&str, &str)] = &[
    ("llama-3.2-1b", "llama-bpe"),
    ("llama-3.2-3b", "llama-bpe"),
    ("llama-3.1-8b", "llama-bpe"),
    ("test-llama3", "llama-bpe"),
    ("test-llama-linear", "llama-spm"),
    ("test-llama-yarn", "llama-spm"),
    ("test-mistral", "llama-spm"),
    ("test-qwen2", "qwen2"),
    ("test-qwen3", "qwen2"),
    ("test-glm4", "qwen2"),
    ("test-phi3", "phi-3"),
    ("test-gemma2", "llama-spm"),
    ("test-gemma3", "llama-spm"),
];

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// one between.
fn more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2
}

pub(super) fn base_type(quant: &str) -> Option<GgmlType> {
    Some(match quant {
        "q4_k_m" => GgmlType::Q4K,
        "q5_k_m" => GgmlType::Q5K,
        "q6_k" => GgmlType::Q6K,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        _ => return None,
    })
}

/// The type llama-quantize gives a tensor of `role` in layer `i` of `n` (dense llama).
pub(super) fn type_for(quant: &str, role: Role, tied: bool, i: usize, n: usize) -> GgmlType {
    let base = base_type(quant).unwrap_or(GgmlType::Q8_0);
    let output_like = role == Role::Output || (tied && role == Role::TokenEmbd);
    match role {
        _ if output_like && base != GgmlType::Q8_0 => GgmlType::Q6K,
        Role::AttnV | Role::FfnDown if matches!(quant, "q4_k_m" | "q5_k_m") && more_bits(i, n) => {
            GgmlType::Q6K
        }
        _ => base,
    }
}

fn file_type(quant: &str) -> u32 {
    match quant {
        "q4_0" => 2,
        "q8_0" => 7,
        "q4_k_m" => 15,
        "q5_k_m" => 17,
        _ => 18,
    }
}

/// Llama 3's per-frequency rope divisors (`rope_freqs.weight`), as its conversion
/// computes them from (factor, low/high frequency factors, original context).
pub fn llama3_rope_factors(n_rot: usize, base: f32, s: (f32, f32, f32, f32)) -> Vec<f32> {
    let (factor, low, high, orig) = s;
    let (low_wavelen, high_wavelen) = (orig / low, orig / high);
    (0..n_rot / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(2.0 * i as f32 / n_rot as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// A llama-layout spec with everything optional off.
fn llama_like(name: &str, d: usize, layers: usize, heads: usize, kv: usize, ff: usize) -> Spec {
    let head_dim = d / heads;
    Spec {
        arch: "llama",
        name: name.to_string(),
        n_embd: d,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim,
        n_rot: head_dim,
        n_ff: ff,
        context: 4096,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        tied: false,
        fused_qkv: false,
        qkv_bias: false,
        fused_gate_up: false,
        qk_norm: false,
        post_norms: false,
        rope_factors: RopeFactorTensors::None,
        meta: Vec::new(),
        tokenizer_meta: Vec::new(),
        types: TypePlan::Fixed {
            matrices: GgmlType::Q8_0,
            vocab: GgmlType::Q8_0,
        },
        file_type: 7,
        vocab_gain: 1.0,
        lm_gain: 4.0,
    }
}

fn kv(key: &str, v: Value) -> (String, Value) {
    (key.to_string(), v)
}

fn fixed(matrices: GgmlType, vocab: GgmlType) -> TypePlan {
    TypePlan::Fixed { matrices, vocab }
}

/// The shape `name`; `quant` is a llama-quantize mix for the benchmark shapes (the test
/// shapes fix their own types and refuse one).
pub fn shape(name: &str, quant: Option<&str>) -> Result<Spec, String> {
    if name.starts_with("test-") && quant.is_some() {
        return Err(format!(
            "{name} fixes its own weight types; --quant applies to the benchmark shapes"
        ));
    }
    let bench = |d, layers, heads, kv, ff, tied, factor: f32| -> Result<Spec, String> {
        let q = quant.unwrap_or("q4_k_m");
        if base_type(q).is_none() {
            return Err(format!(
                "unknown quantization {q:?} (q4_k_m, q5_k_m, q6_k, q8_0, q4_0)"
            ));
        }
        let mut s = llama_like(
            &format!("synthetic {name} {q} (random weights)"),
            d,
            layers,
            heads,
            kv,
            ff,
        );
        s.tied = tied;
        s.context = 131_072;
        s.rope_base = 500_000.0;
        s.rope_factors = RopeFactorTensors::Freqs(llama3_rope_factors(
            s.head_dim,
            s.rope_base,
            (factor, 1.0, 4.0, 8192.0),
        ));
        s.types = TypePlan::Mix(match q {
            "q4_k_m" => "q4_k_m",
            "q5_k_m" => "q5_k_m",
            "q6_k" => "q6_k",
            "q8_0" => "q8_0",
            _ => "q4_0",
        });
        s.file_type = file_type(q);
        s.lm_gain = 1.0;
        Ok(s)
    };
    let test = |s: Spec| {
        Ok(Spec {
            name: format!("autoglm {name} (random weights)"),
            ..s
        })
    };
    match name {
        "llama-3.2-1b" => bench(2048, 16, 32, 8, 8192, true, 32.0),
        "llama-3.2-3b" => bench(3072, 28, 24, 8, 8192, true, 32.0),
        "llama-3.1-8b" => bench(4096, 32, 32, 8, 14336, false, 8.0),
        // Llama 3.2: GQA 4:1, head 64, rope_freqs, K-quant mix.
        "test-llama3" => {
            let mut s = llama_like(name, 256, 2, 4, 1, 512);
            s.rope_base = 500_000.0;
            s.rope_factors = RopeFactorTensors::Freqs(llama3_rope_factors(
                64,
                500_000.0,
                (32.0, 1.0, 4.0, 8192.0),
            ));
            s.types = fixed(GgmlType::Q4K, GgmlType::Q6K);
            s.file_type = 15;
            test(s)
        }
        // Llama 2 style with linear rope scaling (factor 2).
        "test-llama-linear" => {
            let mut s = llama_like(name, 256, 2, 4, 4, 512);
            s.meta = vec![
                kv("rope.scaling.type", Value::String("linear".into())),
                kv("rope.scaling.factor", Value::F32(2.0)),
            ];
            s.types = fixed(GgmlType::Q4_0, GgmlType::Q8_0);
            s.file_type = 2;
            test(s)
        }
        // YaRN (factor 4 over an original context of 256).
        "test-llama-yarn" => {
            let mut s = llama_like(name, 256, 2, 4, 2, 512);
            s.meta = vec![
                kv("rope.scaling.type", Value::String("yarn".into())),
                kv("rope.scaling.factor", Value::F32(4.0)),
                kv("rope.scaling.original_context_length", Value::U32(256)),
            ];
            s.types = fixed(GgmlType::Q5K, GgmlType::Q8_0);
            s.file_type = 17;
            test(s)
        }
        // Mistral 7B's layout: head 128, GQA 4:1, rope base 1e6, written as llama.
        "test-mistral" => {
            let mut s = llama_like(name, 512, 2, 4, 1, 1024);
            s.rope_base = 1_000_000.0;
            s.types = fixed(GgmlType::Q4K, GgmlType::Q6K);
            s.file_type = 15;
            test(s)
        }
        // Qwen2.5: Q/K/V biases, tied embeddings, head 64.
        "test-qwen2" => {
            let mut s = llama_like(name, 256, 2, 4, 2, 512);
            s.arch = "qwen2";
            s.rope_base = 1_000_000.0;
            s.rms_eps = 1e-6;
            s.tied = true;
            s.qkv_bias = true;
            s.types = fixed(GgmlType::Q8_0, GgmlType::Q8_0);
            test(s)
        }
        // Qwen3: head 128 wider than n_embd / n_heads, per-head Q/K norms.
        "test-qwen3" => {
            let mut s = llama_like(name, 256, 2, 4, 2, 768);
            s.arch = "qwen3";
            s.head_dim = 128;
            s.n_rot = 128;
            s.rope_base = 1_000_000.0;
            s.rms_eps = 1e-6;
            s.qk_norm = true;
            s.types = fixed(GgmlType::Q6K, GgmlType::Q8_0);
            s.file_type = 18;
            test(s)
        }
        // GLM-4-0414: fused QKV with bias, fused gate|up, post-norms, half-rotary heads.
        // GLM-4's own vocabulary is not among llama.cpp's vocab files: Qwen2's BPE
        // vocabulary runs under GLM-4's pre-tokenizer name instead.
        "test-glm4" => {
            let mut s = llama_like(name, 256, 2, 4, 1, 512);
            s.arch = "glm4";
            s.head_dim = 128;
            s.n_rot = 64;
            s.fused_qkv = true;
            s.qkv_bias = true;
            s.fused_gate_up = true;
            s.post_norms = true;
            s.tokenizer_meta = vec![kv("tokenizer.ggml.pre", Value::String("glm4".into()))];
            s.types = fixed(GgmlType::Q5K, GgmlType::Q6K);
            s.file_type = 17;
            test(s)
        }
        // Phi-3: head 96, fused QKV and gate|up, LongRoPE factors (long ones apply: the
        // original context of 64 is shorter than any served one) and attention factor.
        "test-phi3" => {
            let mut s = llama_like(name, 384, 2, 4, 4, 1024);
            s.arch = "phi3";
            s.fused_qkv = true;
            s.fused_gate_up = true;
            let half = s.n_rot / 2;
            let long: Vec<f32> = (0..half).map(|i| 1.0 + 0.2 * i as f32).collect();
            let short: Vec<f32> = (0..half).map(|i| 1.0 + 0.02 * i as f32).collect();
            s.rope_factors = RopeFactorTensors::LongShort(long, short);
            s.meta = vec![
                kv("rope.scaling.attn_factor", Value::F32(1.19)),
                kv("rope.scaling.original_context_length", Value::U32(64)),
            ];
            s.types = fixed(GgmlType::Q4_0, GgmlType::Q8_0);
            s.file_type = 2;
            test(s)
        }
        // Gemma 2: head 256, soft caps (small, so the tanh matters on random weights),
        // a sliding window of 8 on every other layer, GELU, post-norms. Llama 2's
        // SentencePiece vocabulary stands in for Gemma's, without the space prefix
        // Gemma's has off.
        "test-gemma2" => {
            let mut s = llama_like(name, 256, 3, 2, 1, 512);
            s.arch = "gemma2";
            s.head_dim = 256;
            s.n_rot = 256;
            s.tied = true;
            s.post_norms = true;
            s.rms_eps = 1e-6;
            s.meta = vec![
                kv("attention.sliding_window", Value::U32(8)),
                kv("attn_logit_softcapping", Value::F32(2.0)),
                kv("final_logit_softcapping", Value::F32(15.0)),
            ];
            s.tokenizer_meta = vec![kv("tokenizer.ggml.add_space_prefix", Value::Bool(false))];
            s.types = fixed(GgmlType::F16, GgmlType::Q8_0);
            s.file_type = 1;
            // Tied embeddings scaled by sqrt(n_embd): small ones, or each token would
            // predict itself.
            s.vocab_gain = 0.25;
            s.lm_gain = 12.0;
            test(s)
        }
        // Gemma 3: per-head Q/K norms, five windowed layers (rope base 10 000) per
        // global one (base 1e6, linear scaling 8), GELU, post-norms.
        "test-gemma3" => {
            let mut s = llama_like(name, 256, 6, 2, 1, 512);
            s.arch = "gemma3";
            s.head_dim = 256;
            s.n_rot = 256;
            s.tied = true;
            s.qk_norm = true;
            s.post_norms = true;
            s.rms_eps = 1e-6;
            s.rope_base = 1_000_000.0;
            s.meta = vec![
                kv("attention.sliding_window", Value::U32(8)),
                kv("rope.freq_base_swa", Value::F32(10_000.0)),
                kv("rope.scaling.type", Value::String("linear".into())),
                kv("rope.scaling.factor", Value::F32(8.0)),
            ];
            s.tokenizer_meta = vec![kv("tokenizer.ggml.add_space_prefix", Value::Bool(false))];
            s.types = fixed(GgmlType::Q4_1, GgmlType::BF16);
            s.file_type = 3;
            s.vocab_gain = 0.25;
            s.lm_gain = 12.0;
            test(s)
        }
        other => Err(format!(
            "unknown shape {other:?} ({})",
            SHAPES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_types_follow_llama_quantize() {
        // Llama-3.1-8B's 32 layers: llama.cpp gives attn_v and ffn_down Q6_K in layers
        // 0-3, 28-31 and every third one from 6.
        let q6: Vec<usize> = (0..32)
            .filter(|&i| type_for("q4_k_m", Role::FfnDown, false, i, 32) == GgmlType::Q6K)
            .collect();
        assert_eq!(
            q6,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        for (quant, role, tied, want) in [
            ("q4_k_m", Role::AttnQkv, false, GgmlType::Q4K),
            ("q4_k_m", Role::TokenEmbd, false, GgmlType::Q4K),
            ("q4_k_m", Role::TokenEmbd, true, GgmlType::Q6K),
            ("q8_0", Role::Output, false, GgmlType::Q8_0),
        ] {
            assert_eq!(type_for(quant, role, tied, 6, 32), want, "{quant}");
        }
        assert!(shape("llama-3.2-1b", Some("q3_k_xl")).is_err());
        assert!(shape("test-qwen3", Some("q8_0")).is_err());
    }

    #[test]
    fn every_listed_shape_builds() {
        for (name, _) in SHAPES {
            let s = shape(name, None).unwrap();
            assert!(s.n_heads.is_multiple_of(s.n_kv_heads), "{name}");
        }
    }
}
