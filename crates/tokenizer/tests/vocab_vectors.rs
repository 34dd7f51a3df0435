//! llama.cpp's own tokenizer test vectors: every vocab-only GGUF in its `models/` whose
//! tokenizer type we support must reproduce every `.out` line (the ids llama.cpp's
//! `test-tokenizer-0` gives for each input, no BOS, special-token text read as text);
//! the others must be refused at load with an error naming what is unsupported.

use gguf::GgufFile;
use model::paths::llamacpp_models_dir;
use std::path::Path;
use tokenizer::Tokenizer;

/// The vocabs autoglm's tokenizer supports (byte-level BPE with these pre-tokenizers, and
/// SentencePiece).
const SUPPORTED: &[&str] = &[
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "qwen35",
    "starcoder",
    "refact",
    "command-r",
    "mpt",
    "falcon",
    "deepseek-coder",
    "deepseek-llm",
    "llama-spm",
    "phi-3",
];

/// (input, llama.cpp's ids) pairs of one vocab.
fn cases(dir: &Path, vocab: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.out"))).unwrap();
    let mut inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    // The file ends with the separator, so the last piece is empty.
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "{vocab}: inputs and outputs");
    inputs
        .into_iter()
        .map(str::to_string)
        .zip(outputs)
        .collect()
}

#[test]
fn every_supported_vocab_reproduces_llama_cpp_and_the_rest_are_refused_by_name() {
    let dir = llamacpp_models_dir(&|k| std::env::var_os(k));
    let mut vocabs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            let v = n.strip_prefix("ggml-vocab-")?.strip_suffix(".gguf.inp")?;
            Some(v.to_string())
        })
        .collect();
    vocabs.sort();
    assert!(vocabs.len() >= 10, "{vocabs:?}");
    let mut report = Vec::new();
    for v in &vocabs {
        let file = GgufFile::open(dir.join(format!("ggml-vocab-{v}.gguf"))).unwrap();
        match Tokenizer::from_gguf(&file) {
            Ok(tok) => {
                let cases = cases(&dir, v);
                let wrong: Vec<String> = cases
                    .iter()
                    .filter_map(|(text, want)| {
                        let got = tok.encode(text, false, false).unwrap();
                        (&got != want).then(|| format!("{text:?}: got {got:?}, llama.cpp {want:?}"))
                    })
                    .collect();
                report.push(format!(
                    "{v}: {}/{} exact",
                    cases.len() - wrong.len(),
                    cases.len()
                ));
                assert!(
                    SUPPORTED.contains(&v.as_str()),
                    "{v} loads but is not in SUPPORTED: add it (and its README line) once it passes"
                );
                assert!(wrong.is_empty(), "{v}:\n{}", wrong.join("\n"));
            }
            Err(e) => {
                let msg = e.to_string();
                report.push(format!("{v}: refused ({msg})"));
                assert!(!SUPPORTED.contains(&v.as_str()), "{v}: {msg}");
                assert!(
                    msg.contains("unsupported tokenizer") || msg.contains("pre-tokenizer"),
                    "{v}: the refusal must name what is unsupported: {msg}"
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Our hard strings (testdata/reference's tricky cases and chat turns with each family's
/// special tokens), with BOS as each vocab adds it and special-token text parsed or not:
/// the ids llama.cpp gave (scripts/tokenizer_goldens.py) for every supported vocab.
#[test]
fn hard_strings_tokenize_like_llama_cpp_in_every_supported_vocab() {
    let dir = llamacpp_models_dir(&|k| std::env::var_os(k));
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model::paths::testdata_dir().join("tokenizer/llamacpp_ids.json"))
            .unwrap(),
    )
    .unwrap();
    let vocabs = golden["vocabs"].as_object().unwrap();
    let mut names: Vec<&str> = vocabs.keys().map(|k| k.as_str()).collect();
    let mut want = SUPPORTED.to_vec();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "goldens for exactly the supported vocabs");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (vocab, cases) in vocabs {
        let tok = Tokenizer::from_gguf(
            &GgufFile::open(dir.join(format!("ggml-vocab-{vocab}.gguf"))).unwrap(),
        )
        .unwrap();
        for c in cases.as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            for (key, parse_special) in [("parse_special", true), ("plain", false)] {
                let got = tok.encode(text, true, parse_special).unwrap();
                if got != ids(&c[key]) {
                    wrong.push(format!(
                        "{vocab} {key} {text:?}: got {got:?}, llama.cpp {}",
                        c[key]
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 13 * 26 * 2, "{checked}");
}
