//! Real chat templates (llama.cpp's models/templates) render with our minijinja setup
//! exactly as transformers' jinja2 setup renders them: testdata/templates/goldens.json,
//! written by scripts/template_goldens.py, for single and multi-turn conversations,
//! with and without the generation prompt, with tools and a tool round trip where the
//! template takes tools, and the same refusals (`raise_exception`).

use model::paths::{llamacpp_models_dir, testdata_dir};
use serde_json::Value;
use tokenizer::{ChatMessage, ChatTemplate};

/// The instant the goldens were rendered at (2026-12-01 12:00 UTC).
fn fixed_clock() -> u64 {
    1_796_126_400
}

fn message(m: &Value) -> ChatMessage {
    ChatMessage {
        role: m["role"].as_str().unwrap().to_string(),
        content: m["content"].as_str().unwrap_or_default().to_string(),
        tool_calls: m["tool_calls"].as_array().cloned().unwrap_or_default(),
        tool_call_id: m["tool_call_id"].as_str().map(str::to_string),
    }
}

#[test]
fn every_template_renders_as_transformers_does() {
    let dir = llamacpp_models_dir(&|k| std::env::var_os(k)).join("templates");
    let goldens: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(testdata_dir().join("templates/goldens.json")).unwrap(),
    )
    .unwrap();
    assert!(goldens.len() >= 60, "{}", goldens.len());
    let mut failures = Vec::new();
    for g in &goldens {
        let name = g["template"].as_str().unwrap();
        let source = std::fs::read_to_string(dir.join(format!("{name}.jinja"))).unwrap();
        let t = ChatTemplate::with_clock(
            &source,
            g["bos"].as_str().unwrap(),
            g["eos"].as_str().unwrap(),
            fixed_clock,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let msgs: Vec<ChatMessage> = g["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(message)
            .collect();
        let tools = g.get("tools").filter(|t| !t.is_null());
        let got = t.render_with_tools(&msgs, tools, g["add_generation_prompt"].as_bool().unwrap());
        let what = format!(
            "{name} / {} / gen={}",
            g["case"], g["add_generation_prompt"]
        );
        match (got, g["rendered"].as_str()) {
            (Ok(a), Some(b)) if a == b => {}
            (Ok(a), Some(b)) => failures.push(format!("{what}:\n ours: {a:?}\n them: {b:?}")),
            (Err(_), None) => {}
            (Ok(a), None) => failures.push(format!(
                "{what}: rendered {a:?}, transformers refused ({})",
                g["error"]
            )),
            (Err(e), Some(_)) => failures.push(format!("{what}: refused: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        goldens.len(),
        failures.join("\n")
    );
}
