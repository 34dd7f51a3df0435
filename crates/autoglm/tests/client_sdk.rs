//! The Rust client against a real `autoglm serve`: typed chat and completions, streaming
//! and not, models, a typed error, HTTP/1.1 and h2c.

mod common;

use autoglm_client::{Client, Error, RetryPolicy};
use common::chaos_proxy::Proxy;
use common::Server;
use futures::StreamExt;
use serde_json::json;

fn chat(v: serde_json::Value) -> api::ChatRequest {
    api::ChatRequest::from_json(&v).unwrap()
}

#[test]
fn the_client_speaks_to_a_real_server_over_http1_and_h2c() {
    let s = Server::start(&["--api-key", "sk-c"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for h2 in [false, true] {
            let c = Client::builder(s.url())
                .api_key("sk-c")
                // The live path, not the response cache.
                .header("Cache-Control", "no-store")
                .retry(RetryPolicy::none())
                .http2_prior_knowledge(h2)
                .build()
                .unwrap();
            let models = c.models().await.unwrap();
            assert_eq!(models.data.len(), 1);
            let req = chat(json!({"messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 12, "temperature": 0}));
            let whole = c.chat(&req).await.unwrap();
            let text = whole.choices[0].message.content.as_deref().unwrap_or_default();
            assert!(!text.is_empty());
            let mut st = c.chat_stream(&req).await.unwrap();
            let mut streamed = String::new();
            while let Some(ch) = st.next().await {
                let ch = ch.unwrap();
                if let Some(t) = ch.choices.first().and_then(|c| c.delta.content.clone()) {
                    streamed.push_str(&t);
                }
            }
            assert_eq!(&streamed, text, "h2c: {h2}");
            let creq = api::CompletionRequest::from_json(&json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0})).unwrap();
            let done = c.completions(&creq).await.unwrap();
            let mut st = c.completions_stream(&creq).await.unwrap();
            let mut ctext = String::new();
            while let Some(ch) = st.next().await {
                ctext.push_str(&ch.unwrap().choices.first().map(|c| c.text.clone()).unwrap_or_default());
            }
            assert_eq!(ctext, done.choices[0].text);
            // Sixteen concurrent streams (one connection with h2c).
            let runs = futures::future::join_all((0..16).map(|i| {
                let c = c.clone();
                async move {
                    let r = chat(json!({"messages": [{"role": "user", "content": format!("Count to {i}.")}], "max_tokens": 8, "temperature": 0}));
                    let mut st = c.chat_stream(&r).await?;
                    let mut n = 0;
                    while let Some(ch) = st.next().await {
                        ch?;
                        n += 1;
                    }
                    Ok::<_, Error>(n)
                }
            }))
            .await;
            assert!(runs.iter().all(|r| matches!(r, Ok(n) if *n > 0)), "{runs:?}");
            // A server error arrives typed, with the OpenAI body.
            let bad = chat(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1_000_000}));
            match c.chat(&bad).await {
                Err(Error::Status { status: 400, body: Some(b), .. }) => {
                    assert!(b.error.message.contains("context"), "{}", b.error.message)
                }
                r => panic!("{:?}", r.map(|_| ())),
            }
        }
        let wrong_key = Client::builder(s.url()).api_key("nope").build().unwrap();
        assert!(matches!(wrong_key.models().await, Err(Error::Status { status: 401, .. })));
    });
}

#[test]
fn large_request_bodies_go_gzipped_and_the_server_reads_them() {
    let s = Server::start(&[]);
    // The proxy in HTTP mode with no fault: it logs each request's encoding and size.
    let p = Proxy::start(s.port, &["--log-requests"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A low threshold keeps the prefill short; the default is 16 KiB.
    let c = Client::builder(format!("http://127.0.0.1:{}/v1", p.port))
        .retry(RetryPolicy::none())
        .gzip_requests_above(Some(1024))
        .build()
        .unwrap();
    // An agent's long conversation: over the threshold.
    let history = "The screen shows a list of settings. ".repeat(60);
    let long = chat(
        json!({"messages": [{"role": "system", "content": history}, {"role": "user", "content": "Which setting?"}], "max_tokens": 3, "temperature": 0}),
    );
    let short = chat(
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}),
    );
    rt.block_on(async {
        c.chat(&long).await.unwrap();
        c.chat(&short).await.unwrap();
    });
    let reqs = p.events("request");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["content_encoding"], "gzip");
    let sent = reqs[0]["body_bytes"].as_u64().unwrap();
    assert!(
        sent * 5 < history.len() as u64,
        "{sent} bytes for {} of text",
        history.len()
    );
    assert_eq!(reqs[1]["content_encoding"], serde_json::Value::Null);
    // Responses are asked for gzipped (and were decoded: the calls above parsed them).
    assert!(
        reqs.iter().all(|r| r["accept_encoding"] == "gzip"),
        "{reqs:?}"
    );
}

#[test]
fn autoglm_chat_streams_an_answer_one_shot_and_as_a_conversation() {
    let s = Server::start(&[]);
    let q = "What is the capital of France?";
    let api_answer = s.post_json("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": q}], "max_tokens": 12, "temperature": 0})).json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args([
            "chat",
            "--base-url",
            &s.url(),
            "--prompt",
            q,
            "--max-tokens",
            "12",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        api_answer
    );
    // Two turns from stdin: two answers, the second with the first in its context.
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args([
            "chat",
            "--base-url",
            &s.url(),
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{q}\nAnd of Italy?\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{text:?}");
    let head: String = api_answer.chars().take(8).collect();
    assert!(text.starts_with(&head), "{text:?}");
}

#[test]
fn the_batcher_combines_tiny_requests_and_each_caller_gets_its_own_answer_or_error() {
    use autoglm_client::batcher::{BatchConfig, Batcher};
    let s = Server::start(&[]);
    // HTTP mode with no fault: the proxy logs every request it forwards.
    let p = Proxy::start(s.port, &["--log-requests"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = Client::builder(format!("http://127.0.0.1:{}/v1", p.port))
        .header("Cache-Control", "no-store")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let words = [
        "apple", "river", "engine", "violet", "thunder", "garden", "silver",
    ];
    let req = |prompt: String| {
        api::CompletionRequest::from_json(
            &json!({"prompt": prompt, "max_tokens": 3, "temperature": 0}),
        )
        .unwrap()
    };
    let prompts: Vec<String> = words
        .iter()
        .map(|w| format!("One word that rhymes with {w}:"))
        .collect();
    let posts = |p: &Proxy| {
        p.events("request")
            .into_iter()
            .filter(|r| r["line"].as_str().unwrap().starts_with("POST"))
            .count()
    };
    rt.block_on(async {
        let mut alone = Vec::new();
        for pr in &prompts {
            alone.push(
                c.completions(&req(pr.clone())).await.unwrap().choices[0]
                    .text
                    .clone(),
            );
        }
        assert_eq!(posts(&p), prompts.len());
        let batcher = Batcher::new(
            c.clone(),
            BatchConfig {
                max_batch: 32,
                max_wait: std::time::Duration::from_millis(200),
            },
        );
        let together =
            futures::future::join_all(prompts.iter().map(|pr| batcher.completion(req(pr.clone()))))
                .await;
        assert_eq!(posts(&p), prompts.len() + 1, "one call for all seven");
        let seven = autoglm_client::batcher::BatchStats {
            requests: 7,
            calls: 1,
        };
        assert_eq!(batcher.stats(), seven);
        for (answer, want) in together.iter().zip(&alone) {
            let answer = answer.as_ref().unwrap();
            assert_eq!(answer.choices.len(), 1);
            assert_eq!(
                (answer.choices[0].index, &answer.choices[0].text),
                (0, want)
            );
        }
        // One prompt too long for the context: the combined call is refused, every request
        // is sent again alone, and only that one fails.
        let mut with_bad: Vec<String> = prompts.clone();
        with_bad.insert(3, "word ".repeat(9000));
        let before = posts(&p);
        let results = futures::future::join_all(
            with_bad
                .iter()
                .map(|pr| batcher.completion(req(pr.clone()))),
        )
        .await;
        assert_eq!(posts(&p) - before, 1 + with_bad.len());
        assert_eq!(batcher.stats().calls, 1 + 1 + with_bad.len() as u64);
        for (i, r) in results.iter().enumerate() {
            match (i, r) {
                (3, Err(Error::Status { status, body, .. })) => {
                    assert_eq!(*status, 400);
                    let code = body.as_ref().and_then(|b| b.error.code.clone());
                    assert_eq!(code.as_deref(), Some("context_length_exceeded"));
                }
                (3, other) => panic!("the long prompt: {other:?}"),
                (i, Ok(a)) => {
                    let want = &alone[if i < 3 { i } else { i - 1 }];
                    assert_eq!(&a.choices[0].text, want);
                }
                (i, Err(e)) => panic!("caller {i}: {e}"),
            }
        }
    });
}
