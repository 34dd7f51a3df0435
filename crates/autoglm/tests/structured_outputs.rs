//! Structured outputs on the real model over real sockets: JSON schemas through the
//! official openai SDK's `parse`, regexes, choices and Lark grammars (Open-AutoGLM's
//! action language among them) enforced token by token, alone, in a batch and under
//! preemption; bad constraints refused with a 400 that names the problem.

mod common;

use common::Server;
use serde_json::{json, Value};

const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");

fn post(s: &Server, path: &str, body: &Value) -> Value {
    let r = s.request("POST", path, &[NO_STORE], body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn chat_text(v: &Value) -> (String, String) {
    let c = &v["choices"][0];
    (
        c["message"]["content"].as_str().unwrap().to_string(),
        c["finish_reason"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_openai_sdk_parses_every_schema_into_its_pydantic_model() {
    let s = Server::start(&[]);
    common::python_check(
        "structured_outputs_check.py",
        &[&s.url()],
        "26 passed, 0 failed",
    );
}

#[test]
fn regexes_choices_and_grammars_hold_streamed_or_not() {
    let s = Server::start(&[]);
    let year = regex::Regex::new(r"^[12][0-9]{3}$").unwrap();
    for prompt in [
        "The year the war ended was",
        "My grandfather was born in",
        "In",
    ] {
        let v = post(
            &s,
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 10, "temperature": 0.8, "seed": 3,
                    "structured_outputs": {"regex": "[12][0-9]{3}"}}),
        );
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert!(year.is_match(text), "{text:?}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
    let choices = ["yes", "no", "it depends"];
    for q in ["Is the sky blue?", "Is fire cold?", "Should I learn Rust?"] {
        let v = post(
            &s,
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": q}], "max_tokens": 10,
                    "temperature": 0, "guided_choice": choices}),
        );
        let (text, finish) = chat_text(&v);
        assert!(choices.contains(&text.as_str()), "{text:?}");
        assert_eq!(finish, "stop");
    }

    // Open-AutoGLM's action language: every step parses as one of its actions.
    let grammar = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/grammars/open_autoglm_actions.lark"
    ))
    .unwrap();
    let s_ = r#""[^"\\\n]{1,80}""#;
    let p = r"\[[0-9]{1,3}, ?[0-9]{1,3}\]";
    let action = regex::Regex::new(&format!(
        r#"^(finish\(message={s_}\)|do\(action=("Launch", app={s_}|"Tap", element={p}(, message={s_})?|"Type", text={s_}|"Type_Name", text={s_}|"Interact"|"Swipe", start={p}, end={p}|"Note", message={s_}|"Call_API", instruction={s_}|"Long Press", element={p}|"Double Tap", element={p}|"Take_over", message={s_}|"Back"|"Home"|"Wait", duration={s_})\))$"#
    ))
    .unwrap();
    let system = r#"You control a phone. Reply with one action: do(action="Launch", app="..."), do(action="Tap", element=[x,y]), do(action="Type", text="..."), do(action="Swipe", start=[x1,y1], end=[x2,y2]), do(action="Back"), do(action="Home"), do(action="Wait", duration="2 seconds"), or finish(message="...") when done."#;
    let mut streamed_once = false;
    for task in [
        "Open WeChat.",
        "Search for the weather in Beijing; the search box is at the top.",
        "Scroll down the news feed.",
        "Go back to the previous screen.",
        "The alarm is set; the task is complete.",
        "Type hello into the chat box.",
    ] {
        let body = json!({"messages": [{"role": "system", "content": system}, {"role": "user", "content": task}],
                          "max_tokens": 80, "temperature": 0, "structured_outputs": {"grammar": grammar}});
        let (text, finish) = chat_text(&post(&s, "/v1/chat/completions", &body));
        assert!(action.is_match(&text), "{task}: {text:?}");
        assert_eq!(finish, "stop");
        if !streamed_once {
            // Streamed, the same text arrives in pieces.
            let mut b = body.clone();
            b["stream"] = json!(true);
            let r = s.request(
                "POST",
                "/v1/chat/completions",
                &[NO_STORE],
                b.to_string().as_bytes(),
            );
            let joined: String = r
                .sse()
                .iter()
                .filter(|d| *d != "[DONE]")
                .filter_map(|d| {
                    serde_json::from_str::<Value>(d).ok()?["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            assert_eq!(joined, text);
            streamed_once = true;
        }
    }
}

#[test]
fn constrained_greedy_output_is_the_same_alone_in_a_batch_and_under_preemption() {
    // 192 KV tokens for six sequences of 80: the scheduler must preempt, mid-constraint.
    let s = Server::start(&[
        "--kv-cache-tokens",
        "192",
        "--block-size",
        "16",
        "--no-cache",
    ]);
    let words = r"[a-z]+( [a-z]+){9,14}\.";
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|i| (0..40).map(|t| 300 + i * 50 + t).collect())
        .collect();
    let body = |p: &Value| {
        json!({"prompt": p, "max_tokens": 40, "temperature": 0,
               "structured_outputs": {"regex": words}})
    };
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            post(&s, "/v1/completions", &body(&json!(p)))["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let preempted_before = s.metric("autoglm_num_preemptions_total");
    let together = post(&s, "/v1/completions", &body(&json!(prompts)));
    assert!(s.metric("autoglm_num_preemptions_total") > preempted_before);
    let re = regex::Regex::new(&format!("^{words}$")).unwrap();
    for (i, a) in alone.iter().enumerate() {
        let c = &together["choices"][i];
        assert_eq!(c["text"].as_str().unwrap(), a, "prompt {i}");
        if c["finish_reason"] == "stop" {
            assert!(re.is_match(a), "{a:?}");
        }
    }

    // Sixteen constrained requests at once, each its own schema state: the probe's
    // answer is the one it gets alone.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 16},
                        "age": {"type": "integer", "minimum": 0, "maximum": 99}},
                        "required": ["name", "age"], "additionalProperties": false});
    let ask = |q: &str| {
        json!({"messages": [{"role": "user", "content": q}], "max_tokens": 60, "temperature": 0,
               "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}})
    };
    let s2 = Server::start(&["--no-cache"]);
    let probe = chat_text(&post(&s2, "/v1/chat/completions", &ask("Invent a person.")));
    let got: Vec<(String, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let (s2, ask) = (&s2, &ask);
                sc.spawn(move || {
                    let q = if i == 7 {
                        "Invent a person.".to_string()
                    } else {
                        format!("Invent person number {i}.")
                    };
                    chat_text(&post(s2, "/v1/chat/completions", &ask(&q)))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got[7], probe);
    for (text, finish) in &got {
        assert_eq!(finish, "stop", "{text}");
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(
            v["name"].as_str().is_some_and(|n| n.chars().count() <= 16),
            "{text}"
        );
        assert!(v["age"].as_u64().is_some_and(|a| a <= 99), "{text}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{text}");
    }
}

#[test]
fn bad_constraints_are_refused_and_short_budgets_end_with_length() {
    let s = Server::start(&[]);
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    for (extra, param, needle) in [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}}),
            "structured_outputs",
            "strin",
        ),
        (
            json!({"structured_outputs": {"regex": "(unclosed"}}),
            "structured_outputs",
            "",
        ),
        (
            json!({"structured_outputs": {"grammar": "start: undefined_rule"}}),
            "structured_outputs",
            "undefined_rule",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "ignore_eos": true}),
            "ignore_eos",
            "ignore_eos",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a"}}),
            "structured_outputs",
            "only one",
        ),
        (
            json!({"response_format": {"type": "yaml"}}),
            "response_format.type",
            "yaml",
        ),
    ] {
        let mut b = json!({"messages": msgs, "max_tokens": 5});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = s.request(
            "POST",
            "/v1/chat/completions",
            &[],
            b.to_string().as_bytes(),
        );
        assert_eq!(r.status, 400, "{extra}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["param"], param, "{extra}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{extra}: {e}"
        );
    }
    // A constraint the budget cannot finish: the text so far, and `length`.
    let v = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": msgs, "max_tokens": 3, "temperature": 0,
                "structured_outputs": {"regex": "(ab){20}"}}),
    );
    let (text, finish) = chat_text(&v);
    assert_eq!(finish, "length");
    assert!(
        "abababababab".starts_with(&text) && !text.is_empty(),
        "{text:?}"
    );
    // The server is fine afterwards.
    assert_eq!(s.health()["status"], "ok");
}
