use super::*;
use serde_json::json;

#[test]
fn chat_parses_parts_and_defaults() {
    let r = ChatRequest::from_json(&json!({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"unknown":1})).unwrap();
    assert_eq!(r.messages[0].content, "ab");
    assert_eq!(r.fields.n, 1);
    assert_eq!(r.fields.temperature, 1.0);
}

#[test]
fn wrong_fields_are_named() {
    let e = ChatRequest::from_json(
        &json!({"messages":[{"role":"user","content":"x"}],"temperature":"hot"}),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("temperature"));
    let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"}],"n":0}))
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("n"));
    let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})).unwrap_err();
    assert!(e.message.contains("text-only"));
    assert_eq!(e.status, 400);
    let e = CompletionRequest::from_json(&json!({"prompt": [1, "a"]})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("prompt"));
    let e = CompletionRequest::from_json(&json!({"prompt": "x", "max_tokens": -3})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
}

#[test]
fn requests_round_trip_through_serde() {
    let chat = json!({"model":"m","messages":[{"role":"developer","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":null}],
        "max_tokens":5,"temperature":0.5,"stop":"x","seed":-3,"logit_bias":{"12":-100,"7":2.5},"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2,"priority":-1});
    let r = ChatRequest::from_json(&chat).unwrap();
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.fields.logit_bias, vec![(7, 2.5), (12, -100.0)]);
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(wire["logit_bias"]["12"], json!(-100.0));
    assert_eq!(
        wire["messages"][2],
        json!({"role":"assistant","content":""})
    );
    assert_eq!(ChatRequest::from_json(&wire).unwrap(), r);
    assert_eq!(serde_json::from_value::<ChatRequest>(wire).unwrap(), r);
    let c =
        CompletionRequest::from_json(&json!({"prompt":[[1,2],[3]],"n":2,"logprobs":3})).unwrap();
    let wire = serde_json::to_value(&c).unwrap();
    assert_eq!(wire["prompt"], json!([[1, 2], [3]]));
    assert_eq!(
        serde_json::from_value::<CompletionRequest>(wire).unwrap(),
        c
    );
    // Deserialize is the validating parser: a wrong field fails the same way.
    let e = serde_json::from_value::<ChatRequest>(json!({"messages": []})).unwrap_err();
    assert!(e.to_string().contains("must not be empty"), "{e}");
}

#[test]
fn output_constraints_are_read_from_every_spelling_and_one_at_a_time() {
    use crate::Structured as S;
    let base = || json!({"messages":[{"role":"user","content":"x"}]});
    let schema = json!({"type":"object","properties":{"a":{"type":"integer"}}});
    for (k, v, want) in [
        (
            "response_format",
            json!({"type":"json_object"}),
            Some(S::JsonObject),
        ),
        ("response_format", json!({"type":"text"}), None),
        (
            "response_format",
            json!({"type":"json_schema","json_schema":{"name":"x","schema":schema,"strict":true}}),
            Some(S::JsonSchema(schema.clone())),
        ),
        (
            "structured_outputs",
            json!({"json": schema}),
            Some(S::JsonSchema(schema.clone())),
        ),
        (
            "structured_outputs",
            json!({"json": schema.to_string()}),
            Some(S::JsonSchema(schema.clone())),
        ),
        (
            "structured_outputs",
            json!({"regex": "[0-9]+"}),
            Some(S::Regex("[0-9]+".into())),
        ),
        (
            "structured_outputs",
            json!({"choice": ["a", "b"]}),
            Some(S::Choice(vec!["a".into(), "b".into()])),
        ),
        (
            "structured_outputs",
            json!({"grammar": "start: \"x\""}),
            Some(S::Grammar("start: \"x\"".into())),
        ),
        (
            "structured_outputs",
            json!({"json_object": true}),
            Some(S::JsonObject),
        ),
        (
            "guided_choice",
            json!(["yes", "no"]),
            Some(S::Choice(vec!["yes".into(), "no".into()])),
        ),
    ] {
        let mut b = base();
        b[k] = v;
        let r = ChatRequest::from_json(&b).unwrap_or_else(|e| panic!("{k}: {e:?}"));
        assert_eq!(r.fields.structured, want, "{k}");
        // The wire shape reads back the same.
        let back = ChatRequest::from_json(&serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back.fields.structured, want, "{k}");
    }
    for (extra, param) in [
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": 3}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"structured_outputs": {"regex": ""}}),
            "structured_outputs.regex",
        ),
        (
            json!({"structured_outputs": {"choice": []}}),
            "structured_outputs.choice",
        ),
        (
            json!({"structured_outputs": {"structural_tag": "x"}}),
            "structured_outputs.structural_tag",
        ),
        (
            json!({"structured_outputs": {"regex": "a", "choice": ["a"]}}),
            "structured_outputs",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "guided_regex": "a"}),
            "guided_regex",
        ),
    ] {
        let mut b = base();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        let e = ChatRequest::from_json(&b).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some(param)),
            "{extra}"
        );
    }
}

#[test]
fn unimplemented_contracts_are_refused_by_name() {
    let base = || json!({"messages":[{"role":"user","content":"x"}]});
    for (k, v) in [
        ("functions", json!([{"name":"f"}])),
        ("best_of", json!(2)),
        ("suffix", json!("tail")),
        ("echo", json!(true)),
        ("min_tokens", json!(5)),
        ("stop_token_ids", json!([2])),
        ("reasoning_effort", json!("high")),
        ("store", json!(true)),
        ("chat_template", json!("{{ x }}")),
    ] {
        let mut b = base();
        b[k] = v;
        let e = ChatRequest::from_json(&b).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(k)), "{k}");
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    }
    for (k, v) in [
        ("tools", json!([])),
        ("tool_choice", json!("none")),
        ("response_format", json!({"type":"text"})),
        ("best_of", json!(1)),
        ("suffix", json!("")),
        ("echo", json!(false)),
        ("min_tokens", json!(0)),
        ("stop_token_ids", json!([])),
        ("store", json!(false)),
        ("add_generation_prompt", json!(true)),
        ("truly_unknown", json!({"x": 1})),
    ] {
        let mut b = base();
        b[k] = v;
        assert!(ChatRequest::from_json(&b).is_ok(), "{k}");
    }
    let e =
        ChatRequest::from_json(&json!({"messages":[{"role":"user","content":null}]})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].content"));
    let e = ChatRequest::from_json(
        &json!({"messages":[{"role":"user","content":"x"}],"logit_bias":{"a":1}}),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("logit_bias"));
    let e = ChatRequest::from_json(
        &json!({"messages":[{"role":"user","content":"x"}],"logit_bias":{"1":101}}),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("logit_bias"));
}

#[test]
fn tools_are_for_chat_only() {
    let tools = json!([{"type":"function","function":{"name":"f"}}]);
    let e = CompletionRequest::from_json(&json!({"prompt": "x", "tools": tools})).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("tools")));
    assert!(e.message.contains("/v1/chat/completions"), "{}", e.message);
    let r = ChatRequest::from_json(
        &json!({"messages":[{"role":"user","content":"x"}], "tools": tools}),
    )
    .unwrap();
    assert!(r.tools.active());
    // A tool message must answer a call made earlier.
    let e = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"},
        {"role":"tool","tool_call_id":"nope","content":"1"}]}))
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
    let ok = ChatRequest::from_json(&json!({"messages":[{"role":"user","content":"x"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c","content":"1"}]}))
    .unwrap();
    assert_eq!(ok.messages[1].tool_calls[0].id, "c");
    let wire = serde_json::to_value(&ok).unwrap();
    assert_eq!(ChatRequest::from_json(&wire).unwrap(), ok);
}

#[test]
fn prompts_of_every_shape() {
    assert_eq!(
        CompletionRequest::from_json(&json!({"prompt": "a"}))
            .unwrap()
            .prompt,
        Prompt::Text(vec!["a".into()])
    );
    assert_eq!(
        CompletionRequest::from_json(&json!({"prompt": ["a", "b"]}))
            .unwrap()
            .prompt,
        Prompt::Text(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        CompletionRequest::from_json(&json!({"prompt": [1, 2]}))
            .unwrap()
            .prompt,
        Prompt::Tokens(vec![vec![1, 2]])
    );
    assert_eq!(
        CompletionRequest::from_json(&json!({"prompt": [[1], [2, 3]]}))
            .unwrap()
            .prompt,
        Prompt::Tokens(vec![vec![1], vec![2, 3]])
    );
}
