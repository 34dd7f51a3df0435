//! The CLI contracts, run as a user runs them: the real binary on the real model.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn autoglm(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(args)
        .output()
        .expect("run autoglm");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "autoglm {args:?} failed: {se}");
    (so, se)
}

fn reference(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn pull_prints_the_absolute_model_path_last_and_is_idempotent() {
    let (out, _) = autoglm(&["pull"]);
    let path = PathBuf::from(out.lines().last().unwrap());
    assert!(path.is_absolute() && path.exists(), "{path:?}");
    let t = std::time::Instant::now();
    let (again, _) = autoglm(&["pull"]);
    assert_eq!(again, out);
    assert!(
        t.elapsed().as_secs_f64() < 5.0,
        "second pull should not fetch or re-hash"
    );
}

#[test]
fn generate_json_matches_the_reference_prompt_and_reports_logprobs() {
    let r = reference("llamacpp_smollm2_q4_1.json");
    let c = &r["completion"];
    let (out, _) = autoglm(&[
        "generate",
        "--prompt",
        c["request"]["prompt"].as_str().unwrap(),
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--top-logprobs",
        "3",
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&v["prompt_token_ids"]), ids(&c["prompt_token_ids"]));
    let toks = ids(&v["token_ids"]);
    assert_eq!(toks.len(), 8);
    assert_eq!(&toks[..5], &ids(&c["token_ids"])[..5]);
    assert!(v["text"].as_str().unwrap().starts_with(" Paris."));
    assert_eq!(v["finish_reason"], "length");
    let top = v["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 8);
    for (step, alts) in top.iter().enumerate() {
        let alts = alts.as_array().unwrap();
        assert_eq!(alts.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(alts[0][0].as_u64().unwrap(), toks[step]);
        assert!(alts[0][1].as_f64().unwrap() <= 0.0);
    }
}

#[test]
fn generate_messages_applies_the_chat_template() {
    let r = reference("llamacpp_smollm2_q4_1.json");
    let chat = &r["chat"];
    let dir = std::env::temp_dir().join(format!("autoglm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("messages.json");
    // Content as an array of text parts, the way agent clients send it.
    std::fs::write(&file, r#"[{"role":"user","content":[{"type":"text","text":"What is the capital "},{"type":"text","text":"of France?"}]}]"#).unwrap();
    let (out, _) = autoglm(&[
        "generate",
        "--messages",
        file.to_str().unwrap(),
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids(&v["prompt_token_ids"]), ids(&chat["prompt_token_ids"]));
}

/// Every instruction-set path computes the same numbers: the SIMD kernels are bitwise
/// twins of the scalar reference, so greedy tokens and log-probabilities match exactly.
#[test]
fn every_instruction_set_gives_bitwise_the_same_generation() {
    let run = |isa: &str| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
            .env("AUTOGLM_ISA", isa)
            .args([
                "generate",
                "--prompt",
                "The capital of France is",
                "--max-tokens",
                "12",
                "--temperature",
                "0",
                "--top-logprobs",
                "3",
                "--json",
            ])
            .output()
            .expect("run autoglm");
        assert!(
            out.status.success(),
            "{isa}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let best = run("avx512");
    assert_eq!(best["token_ids"].as_array().unwrap().len(), 12);
    for isa in ["avx2", "scalar"] {
        assert_eq!(run(isa), best, "{isa} differs from the best path");
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let args = [
        "generate",
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "24",
        "--temperature",
        "1.0",
        "--top-p",
        "0.95",
        "--seed",
        "42",
        "--json",
        "--ignore-eos",
    ];
    let a: Value = serde_json::from_str(autoglm(&args).0.trim()).unwrap();
    let b: Value = serde_json::from_str(autoglm(&args).0.trim()).unwrap();
    assert_eq!(a["token_ids"], b["token_ids"]);
    let mut other = args;
    other[10] = "43";
    let c: Value = serde_json::from_str(autoglm(&other).0.trim()).unwrap();
    assert_ne!(a["token_ids"], c["token_ids"]);
}

#[test]
fn perplexity_on_gpl3_is_within_half_a_percent_of_exact() {
    let gpl = "/usr/share/common-licenses/GPL-3";
    let exact = reference("exact_f64_shared.json");
    let want = exact["perplexity_gpl3_ctx512"]["exact"]["ppl"]
        .as_f64()
        .unwrap();
    let (out, _) = autoglm(&["perplexity", "--file", gpl, "--ctx", "512", "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let ppl = v["ppl"].as_f64().unwrap();
    assert_eq!(v["n_tokens"], 7638);
    assert_eq!(v["scored"], 3570);
    assert!(
        (ppl / want - 1.0).abs() < 0.005,
        "ppl {ppl} vs exact {want}"
    );
}

#[test]
fn perf_json_has_the_contract_keys() {
    let (out, _) = autoglm(&[
        "perf",
        "--prompt-tokens",
        "32",
        "--gen-tokens",
        "4",
        "--decode-context",
        "8",
        "--batch",
        "1,2",
        "--repetitions",
        "1",
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    let d = v["decode"].as_array().unwrap();
    assert_eq!(
        d.iter()
            .map(|e| e["batch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(d.iter().all(|e| e["tokens_per_s"].as_f64().unwrap() > 0.0));
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(["generate", "--model", "/nonexistent.gguf", "--prompt", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.gguf"));
    let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(["generate", "--prompt", "x", "--max-tokens", "100000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("context length"));
}
