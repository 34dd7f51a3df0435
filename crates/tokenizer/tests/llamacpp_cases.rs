//! Token ids and chat rendering must equal llama.cpp's, byte for byte.

use gguf::GgufFile;
use model::paths::{test_model_path, testdata_dir};
use serde_json::Value;
use std::sync::OnceLock;
use tokenizer::{ChatMessage, ChatTemplate, Detokenizer, Tokenizer};

fn tok() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::from_gguf(&GgufFile::open(test_model_path(&|k| std::env::var_os(k))).unwrap())
            .unwrap()
    })
}

fn json(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(testdata_dir().join("reference").join(name)).unwrap(),
    )
    .unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn every_reference_string_tokenizes_like_llamacpp() {
    let cases = json("tokenizer_cases.json");
    let mut n = 0;
    for c in cases["strings"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        for (variant, parse_special) in
            [("parse_special_true", true), ("parse_special_false", false)]
        {
            let want = ids(&c["results"][variant]["token_ids"]);
            let got = tok().encode(text, true, parse_special).unwrap();
            assert_eq!(got, want, "{} ({variant}): {text:?}", c["id"]);
            n += 1;
            if c["detokenize_roundtrip_equal"].as_bool() == Some(true) {
                assert_eq!(tok().decode(&got).unwrap(), text, "{} round trip", c["id"]);
            }
        }
    }
    assert_eq!(n, 40);
}

#[test]
fn special_token_text_is_literal_when_parsing_is_off() {
    let on = tok().encode("<|im_start|>user", false, true).unwrap();
    let off = tok().encode("<|im_start|>user", false, false).unwrap();
    assert_eq!(on[0], 1);
    assert!(!off.contains(&1) && off.len() > 2, "{off:?}");
}

#[test]
fn completion_and_chat_prompts_match_llamacpp() {
    let r = json("llamacpp_smollm2_q4_1.json");
    let c = &r["completion"];
    assert_eq!(
        tok()
            .encode(c["request"]["prompt"].as_str().unwrap(), true, true)
            .unwrap(),
        ids(&c["prompt_token_ids"])
    );

    let chat = &r["chat"];
    let messages: Vec<ChatMessage> = chat["request"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    let t = tok();
    let tmpl = ChatTemplate::new(t.chat_template().unwrap(), t.bos_text(), t.eos_text()).unwrap();
    let rendered = tmpl.render(&messages, true).unwrap();
    assert_eq!(rendered, chat["rendered_prompt"].as_str().unwrap());
    assert_eq!(
        t.encode(&rendered, true, true).unwrap(),
        ids(&chat["prompt_token_ids"])
    );
    assert_eq!(
        t.decode(&ids(&chat["token_ids"])).unwrap(),
        chat["text"].as_str().unwrap()
    );
}

#[test]
fn explicit_system_message_replaces_the_default() {
    let t = tok();
    let tmpl = ChatTemplate::new(t.chat_template().unwrap(), t.bos_text(), t.eos_text()).unwrap();
    let msgs = vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "Bye"),
    ];
    let s = tmpl.render(&msgs, true).unwrap();
    assert_eq!(
        s,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!tmpl.render(&msgs, false).unwrap().ends_with("assistant\n"));
}

#[test]
fn incremental_detokenization_never_splits_a_character() {
    let t = tok();
    for text in [
        "👨\u{200d}👩\u{200d}👧\u{200d}👦 family",
        "你好，世界！",
        "Ångström Ærø",
        "plain ascii",
    ] {
        let ids = t.encode(text, false, false).unwrap();
        let mut d = Detokenizer::new();
        let mut out = String::new();
        let mut held_back = false;
        for &id in &ids {
            let piece = d.push(t, id).unwrap();
            held_back |= piece.is_empty();
            out.push_str(&piece);
        }
        out.push_str(&d.finish());
        assert_eq!(out, text);
        if text.starts_with('👨') {
            assert!(
                held_back,
                "emoji tokens split a character, so some pushes must hold bytes back"
            );
        }
    }
}

#[test]
fn eog_tokens_include_im_end_and_endoftext() {
    assert!(tok().is_eog(2));
    assert!(tok().is_eog(0));
    assert!(!tok().is_eog(1));
}
