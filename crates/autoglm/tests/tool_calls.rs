//! Tool calls and reasoning on the real model over real sockets: every `tool_choice`
//! mode through the official openai SDK and through LangChain, the errors a bad tool
//! request gets, a call cut by `max_tokens`, and `--reasoning-parser` splitting the
//! thinking from the answer (streamed or not, with a constraint on the answer only).

mod common;

use common::Server;
use serde_json::{json, Value};

#[test]
fn every_tool_choice_works_through_the_openai_sdk() {
    // No response cache: every streamed case is a live stream, not a replay.
    let s = Server::start(&["--no-cache"]);
    common::python_check("tool_calls_check.py", &[&s.url()], "8 passed, 0 failed");
}

#[test]
fn langchain_structured_output_and_bound_tools_work() {
    let s = Server::start(&[]);
    common::python_check("langchain_check.py", &[&s.url()], "4 passed, 0 failed");
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

#[test]
fn bad_tool_requests_are_refused_by_name_and_a_cut_call_ends_with_length() {
    let s = Server::start(&[]);
    let ask = |extra: Value| {
        let mut b = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                           "max_tokens": 40, "temperature": 0, "tools": weather_tools()});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        s.post_json("/v1/chat/completions", &b)
    };
    for (extra, param) in [
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"ignore_eos": true, "tool_choice": "required"}),
            "ignore_eos",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"},
                                {"role": "tool", "tool_call_id": "call_9", "content": "1"}]}),
            "messages[1].tool_call_id",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f",
                "parameters": {"type": "object", "properties": {"a": {"type": "frobnicate"}}, "required": ["a"]}}}],
                   "tool_choice": "required"}),
            "structured_outputs",
        ),
    ] {
        let r = ask(extra.clone());
        assert_eq!(r.status, 400, "{extra}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{extra}: {}", r.text());
    }
    let r = s.post_json(
        "/v1/completions",
        &json!({"prompt": "x", "tools": weather_tools()}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("tools"))
    );

    // Cut inside the call: `length`, and the arguments so far.
    let r = ask(json!({"tool_choice": "required", "max_tokens": 18}));
    assert_eq!(r.status, 200, "{}", r.text());
    let c = &r.json()["choices"][0];
    assert_eq!(c["finish_reason"], "length", "{c}");
    let args = c["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap_or_else(|| panic!("{c}"))
        .to_string();
    assert!(serde_json::from_str::<Value>(&args).is_err(), "{args}");
    assert!(r#"{"city": "Paris"}"#.starts_with(&args), "{args}");
    // Cut before the name was complete: no call, the text so far as content.
    let v = ask(json!({"tool_choice": "required", "max_tokens": 5})).json();
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "length", "{c}");
    assert!(c["message"].get("tool_calls").is_none(), "{c}");
    assert!(
        c["message"]["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("<tool_call>")),
        "{c}"
    );
}

/// Two earlier turns that thought before answering: the real model follows the pattern.
fn thinking_chat(q: &str, extra: Value) -> Value {
    let mut b = json!({"messages": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>Two plus two is four.</think>4"},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "<think>France's capital is Paris.</think>Paris"},
        {"role": "user", "content": q}], "max_tokens": 60, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn streamed_parts(s: &Server, body: &Value) -> (String, String, String) {
    let mut b = body.clone();
    b["stream"] = json!(true);
    let r = s.post_json("/v1/chat/completions", &b);
    let (mut reasoning, mut content, mut finish) = (String::new(), String::new(), String::new());
    for d in r.sse().iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        let c = &v["choices"][0];
        reasoning.push_str(c["delta"]["reasoning_content"].as_str().unwrap_or(""));
        content.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (reasoning, content, finish)
}

#[test]
fn the_reasoning_parser_splits_thinking_from_the_answer() {
    let s = Server::start(&["--reasoning-parser", "qwen3", "--no-cache"]);
    let body = thinking_chat("What is the capital of Italy?", json!({}));
    let v = s.post_json("/v1/chat/completions", &body).json();
    let m = &v["choices"][0]["message"];
    let reasoning = m["reasoning_content"].as_str().unwrap().to_string();
    let content = m["content"].as_str().unwrap().to_string();
    assert!(
        reasoning.contains("Rome") && !reasoning.contains("think>"),
        "{m}"
    );
    assert_eq!(content, "Rome", "{m}");
    assert_eq!(
        streamed_parts(&s, &body),
        (reasoning.clone(), content, "stop".to_string())
    );

    // A constraint holds the answer and leaves the thinking free.
    for (extra, check) in [
        (
            json!({"structured_outputs": {"choice": ["Madrid", "Rome", "Berlin"]}}),
            "choice",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a",
                "schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                           "required": ["city"], "additionalProperties": false}}}}),
            "json",
        ),
    ] {
        let v = s
            .post_json(
                "/v1/chat/completions",
                &thinking_chat("What is the capital of Italy?", extra),
            )
            .json();
        let m = &v["choices"][0]["message"];
        assert!(
            m["reasoning_content"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{m}"
        );
        let c = m["content"].as_str().unwrap();
        match check {
            "choice" => assert!(["Madrid", "Rome", "Berlin"].contains(&c), "{m}"),
            _ => assert!(
                serde_json::from_str::<Value>(c).unwrap()["city"].is_string(),
                "{m}"
            ),
        }
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    // A reply that does not open the block has no thinking.
    let v = s
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 20, "temperature": 0}),
        )
        .json();
    let m = &v["choices"][0]["message"];
    assert!(m.get("reasoning_content").is_none(), "{m}");
    assert!(!m["content"].as_str().unwrap().is_empty());

    // DeepSeek-R1's parser: the prompt opened the block, so without `</think>`
    // everything is thinking.
    let r1 = Server::start(&["--reasoning-parser", "deepseek_r1"]);
    let v = r1
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 20, "temperature": 0}),
        )
        .json();
    let m = &v["choices"][0]["message"];
    assert!(m["content"].is_null(), "{m}");
    assert!(!m["reasoning_content"].as_str().unwrap().is_empty(), "{m}");
}
