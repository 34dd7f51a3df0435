//! The tokenizer over HTTP (`/tokenize`, `/detokenize`, `/apply-template`) and on the
//! command line (`autoglm tokenize`), on the real model: the ids are the ones generation
//! uses, and bad input is a 400 naming the field.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::process::Command;

fn cli_ids(text: &str) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(["tokenize", "--json", "--text", text])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u64> {
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

#[test]
fn tokenize_detokenize_and_apply_template_agree_with_generation() {
    let s = Server::start(&[]);
    let ok = |path: &str, body: Value| {
        let r = s.post_json(path, &body);
        assert_eq!(r.status, 200, "{path} {body}: {}", r.text());
        r.json()
    };
    let text = "Hello world, it's 2026! <|im_start|>";
    let v = ok(
        "/tokenize",
        json!({"prompt": text, "return_token_strs": true}),
    );
    let t = ids(&v);
    assert_eq!(t, cli_ids(text));
    assert_eq!(v["count"].as_u64().unwrap() as usize, t.len());
    assert!(v["max_model_len"].as_u64().unwrap() >= 2048);
    // The special token's text is read as that token, as generation reads it.
    assert_eq!(
        v["token_strs"].as_array().unwrap().last().unwrap(),
        "<|im_start|>"
    );
    let back = ok("/detokenize", json!({"tokens": t}));
    assert_eq!(back["prompt"], text);

    // A conversation: the rendered prompt, its ids, and what a chat request counts.
    let messages =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]);
    let prompt = ok("/apply-template", json!({"messages": messages}))["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt:?}");
    let chat_ids = ids(&ok("/tokenize", json!({"messages": messages})));
    assert_eq!(chat_ids, cli_ids(&prompt));
    let usage = ok(
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 1}),
    )["usage"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(usage as usize, chat_ids.len());
    let no_gen = ok(
        "/tokenize",
        json!({"messages": messages, "add_generation_prompt": false}),
    );
    assert!(ids(&no_gen).len() < chat_ids.len());
    // Tools reach the prompt the way chat renders them.
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let with_tools = ok(
        "/apply-template",
        json!({"messages": messages, "tools": tools}),
    )["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        with_tools.contains("\"name\":\"get_weather\""),
        "{with_tools}"
    );

    for (path, body, param) in [
        ("/tokenize", json!({}), "prompt"),
        ("/tokenize", json!({"prompt": ["a"]}), "prompt"),
        (
            "/tokenize",
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        ("/detokenize", json!({"tokens": [1, 99999999]}), "tokens"),
        ("/detokenize", json!({"tokens": "1 2"}), "tokens"),
        ("/apply-template", json!({"messages": []}), "messages"),
    ] {
        let r = s.post_json(path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{path} {body}");
    }
    let r = s.post_json("/tokenize", &json!({"prompt": "x", "model": "other"}));
    assert_eq!(r.status, 404);
}
