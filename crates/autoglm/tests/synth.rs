//! `autoglm synth` files, loaded the way the benchmarks load them: the kernels stream
//! exactly the GGUF's bytes per token, and the process holds one copy of the weights.

use gguf::GgufFile;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn autoglm(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(args)
        .output()
        .expect("run autoglm");
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "autoglm {args:?} failed: {se}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn default_model() -> PathBuf {
    model::paths::test_model_path(&|k| std::env::var_os(k))
}

/// Bytes of the matrices a decoded token multiplies by: every 2-D tensor except the
/// token embedding (looked up, not multiplied) — unless it doubles as the output.
fn matmul_bytes(path: &Path) -> u64 {
    let f = GgufFile::open(path).unwrap();
    let tied = f.tensor("output.weight").is_none();
    f.tensors()
        .iter()
        .filter(|t| t.dims.len() == 2 && (tied || t.name != "token_embd.weight"))
        .map(|t| t.n_bytes)
        .sum()
}

#[test]
fn k_quant_mixes_stream_their_file_bytes_and_hold_one_copy() {
    let dir = tempfile_dir();
    for quant in ["q4_k_m", "q5_k_m", "q8_0", "q4_0"] {
        let out = dir.join(format!("llama-3.2-1b-{quant}-L2.gguf"));
        let vocab = default_model();
        let printed = autoglm(&[
            "synth",
            "--shape",
            "llama-3.2-1b",
            "--quant",
            quant,
            "--layers",
            "2",
            "--vocab",
            vocab.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(printed.trim(), out.to_str().unwrap());
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.get_u64("llama.block_count").unwrap(), 2);
        assert_eq!(
            f.get_array("tokenizer.ggml.tokens").unwrap().len(),
            GgufFile::open(&vocab)
                .unwrap()
                .get_array("tokenizer.ggml.tokens")
                .unwrap()
                .len()
        );
        let perf: Value = serde_json::from_str(&autoglm(&[
            "perf",
            "--model",
            out.to_str().unwrap(),
            "--prompt-tokens",
            "16",
            "--gen-tokens",
            "4",
            "--batch",
            "1",
            "--repetitions",
            "1",
            "--json",
        ]))
        .unwrap();
        let streamed = perf["weight_bytes_per_token"].as_u64().unwrap();
        assert_eq!(streamed, matmul_bytes(&out), "{quant}: bytes per token");
        let mem = &perf["memory"];
        let file = mem["file_bytes"].as_u64().unwrap();
        let after_load = mem["rss_after_load_bytes"].as_u64().unwrap();
        // One copy of the weights plus the process itself (tokenizer, pool, code): a second
        // copy would be another ~100 MB here.
        assert!(
            after_load < file + (64 << 20),
            "{quant}: RSS after load {after_load} for a {file}-byte file"
        );
        eprintln!("{quant}: file {file}, RSS after load {after_load}");
        assert!(perf["decode"][0]["tokens_per_s"].as_f64().unwrap() > 0.0);
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_dir(&dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("autoglm-synth-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
