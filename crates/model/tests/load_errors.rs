//! A file the engine cannot run is refused at load with an error naming what is wrong:
//! the architecture, a tensor's type, a tensor the architecture needs, or one it does
//! not use (never a silently different computation).

use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use kernels::ThreadPool;
use model::synth::{shape, Spec};
use model::Model;
use std::sync::Arc;

/// A 300-token byte-level vocabulary, enough for the synthetic models' metadata.
fn vocab() -> GgufFile {
    let mut w = GgufWriter::new();
    let tokens: Vec<Value> = (0..300).map(|i| Value::String(format!("t{i}"))).collect();
    w.meta("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.meta(
        "tokenizer.ggml.tokens",
        Value::Array(gguf::ValueType::String, tokens),
    );
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

fn file(spec: &Spec) -> GgufFile {
    GgufFile::from_bytes(model::synth::build(spec, &vocab()).unwrap().to_bytes()).unwrap()
}

fn small(name: &str) -> Spec {
    let mut s = shape(name, None).unwrap();
    s.n_layers = 1;
    s
}

fn load_err(f: &GgufFile) -> String {
    match Model::from_gguf(f, Arc::new(ThreadPool::new(1))) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

/// The same file with tensor `name` stored as `ty` (zero blocks of the right size).
fn retyped(f: &GgufFile, name: &str, ty: GgmlType, block: (usize, usize)) -> GgufFile {
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        w.meta(k, v.clone());
    }
    for t in f.tensors() {
        if t.name == name {
            let bytes = vec![0u8; t.n_elements as usize / block.0 * block.1];
            w.tensor(&t.name, &t.dims, ty, bytes);
        } else {
            w.tensor(&t.name, &t.dims, t.ty, f.tensor_data(t).to_vec());
        }
    }
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

#[test]
fn every_test_shape_loads() {
    for (name, _) in model::synth::SHAPES
        .iter()
        .filter(|s| s.0.starts_with("test-"))
    {
        let f = file(&small(name));
        Model::from_gguf(&f, Arc::new(ThreadPool::new(1)))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn an_unknown_architecture_is_named_with_the_supported_ones() {
    let mut s = small("test-llama3");
    s.arch = "mamba";
    let e = load_err(&file(&s));
    assert!(e.contains("unsupported architecture \"mamba\""), "{e}");
    for a in [
        "llama", "qwen2", "qwen3", "glm4", "phi3", "gemma2", "gemma3",
    ] {
        assert!(e.contains(a), "{e}");
    }
}

#[test]
fn an_unsupported_weight_type_names_the_tensor_and_the_type() {
    let f = retyped(
        &file(&small("test-qwen2")),
        "blk.0.ffn_down.weight",
        GgmlType::Q2K,
        (256, 84),
    );
    let e = load_err(&f);
    assert!(
        e.contains("blk.0.ffn_down.weight") && e.contains("Q2_K"),
        "{e}"
    );
}

#[test]
fn a_tensor_the_architecture_needs_is_named_when_missing() {
    // Qwen3 normalizes Q and K per head: a file without those norms is not Qwen3.
    let mut s = small("test-qwen3");
    s.qk_norm = false;
    let e = load_err(&file(&s));
    assert!(e.contains("blk.0.attn_q_norm.weight"), "{e}");
}

#[test]
fn a_tensor_the_architecture_does_not_use_is_named() {
    // Llama has no per-head Q/K norms: ignoring them would compute another model.
    let mut s = small("test-llama3");
    s.qk_norm = true;
    let e = load_err(&file(&s));
    assert!(
        e.contains("does not use") && e.contains("blk.0.attn_k_norm.weight"),
        "{e}"
    );
}

#[test]
fn per_layer_head_counts_are_refused_by_name() {
    let mut s = small("test-llama3");
    s.meta.push((
        "attention.head_count_kv".into(),
        Value::Array(gguf::ValueType::U32, vec![Value::U32(1)]),
    ));
    let e = load_err(&file(&s));
    assert!(e.contains("attention.head_count_kv"), "{e}");
}
