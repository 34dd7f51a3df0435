//! The Rust client through `autoglm chaos-proxy` in front of a real `autoglm serve`:
//! injected statuses and resets are retried per the table, a stream broken mid-way is
//! not, 300 ms of added latency against a 250 ms first-byte timeout does not become a
//! retry storm under the budget, and h2c streams share one connection.

mod common;

use autoglm_client::{Client, Error, Phase, RetryPolicy, Timeouts};
use common::chaos_proxy::Proxy;
use common::Server;
use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

fn req(words: &str, max_tokens: u32, stream: bool) -> api::ChatRequest {
    api::ChatRequest::from_json(&json!({"messages": [{"role": "user", "content": words}], "max_tokens": max_tokens, "temperature": 0, "stream": stream})).unwrap()
}

fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

#[test]
fn injected_statuses_and_resets_are_retried_per_the_table() {
    let s = Server::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Half the requests answered 503 (Retry-After: 0): retried until one gets through.
        let p = Proxy::start(
            s.port,
            &[
                "--status",
                "503",
                "--status-rate",
                "0.5",
                "--retry-after",
                "0",
                "--seed",
                "7",
            ],
        );
        let c = p.client(fast(10), Timeouts::default(), false);
        for i in 0..4 {
            let r = c.chat(&req(&format!("Say {i}."), 4, false)).await.unwrap();
            assert!(r.choices[0]
                .message
                .content
                .as_deref()
                .is_some_and(|t| !t.is_empty()));
        }
        let (requests, injected) = (p.events("request"), p.events("inject"));
        assert_eq!(
            requests.len(),
            injected.len() + 4,
            "every injected 503 was retried once"
        );
        assert!(!injected.is_empty());
        let attempts: Vec<u64> = requests
            .iter()
            .map(|r| r["attempt"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            attempts.iter().filter(|&&a| a == 1).count(),
            4,
            "{attempts:?}"
        );

        // 400 is never retried.
        let p = Proxy::start(s.port, &["--status", "400"]);
        let c = p.client(fast(10), Timeouts::default(), false);
        assert!(matches!(
            c.chat(&req("x", 2, false)).await,
            Err(Error::Status { status: 400, .. })
        ));
        assert_eq!(p.events("request").len(), 1);

        // 429 with Retry-After: 1 waits a second between attempts.
        let p = Proxy::start(s.port, &["--status", "429", "--retry-after", "1"]);
        let c = p.client(fast(2), Timeouts::default(), false);
        assert!(matches!(
            c.chat(&req("x", 2, false)).await,
            Err(Error::Status { status: 429, .. })
        ));
        let r = p.events("request");
        assert_eq!(r.len(), 2);
        let gap = r[1]["ms"].as_f64().unwrap() - r[0]["ms"].as_f64().unwrap();
        assert!(gap >= 990.0, "{gap}");

        // Retry-After as an HTTP date (whole seconds: 2 s ahead waits 1-2 s) and OpenAI's
        // retry-after-ms.
        let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
        let p = Proxy::start(s.port, &["--status", "429", "--retry-after", &at]);
        let c = p.client(fast(2), Timeouts::default(), false);
        assert!(c.chat(&req("x", 2, false)).await.is_err());
        let r = p.events("request");
        let gap = r[1]["ms"].as_f64().unwrap() - r[0]["ms"].as_f64().unwrap();
        assert!((900.0..2600.0).contains(&gap), "{gap}");
        let p = Proxy::start(s.port, &["--status", "429", "--retry-after-ms", "300"]);
        let c = p.client(fast(2), Timeouts::default(), false);
        assert!(c.chat(&req("x", 2, false)).await.is_err());
        let r = p.events("request");
        let gap = r[1]["ms"].as_f64().unwrap() - r[0]["ms"].as_f64().unwrap();
        assert!((295.0..900.0).contains(&gap), "{gap}");

        // No server wait: full jitter, attempt k waits random(0, min(cap, base * 2^k)),
        // read off the proxy's arrival times of each call's attempts.
        let p = Proxy::start(s.port, &["--status", "503"]);
        let jitter = RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(300),
            budget_min: 100.0,
            ..RetryPolicy::default()
        };
        let c = p.client(jitter, Timeouts::default(), false);
        let mut gaps = Vec::new();
        for i in 0..5 {
            assert!(c.chat(&req(&format!("q{i}"), 2, false)).await.is_err());
        }
        let r = p.events("request");
        assert_eq!(r.len(), 20);
        for call in r.chunks(4) {
            for (k, w) in call.windows(2).enumerate() {
                assert_eq!(w[1]["attempt"].as_str(), Some(&*(k + 2).to_string()));
                let gap = w[1]["ms"].as_f64().unwrap() - w[0]["ms"].as_f64().unwrap();
                let bound = (100.0 * 2f64.powi(k as i32)).min(300.0);
                // Slack above for the connect and the proxy's parse on a loaded machine.
                assert!(gap <= bound + 120.0, "attempt {} after {gap} ms", k + 2);
                gaps.push(gap / bound);
            }
        }
        // 15 uniform draws: all in the top half of their range has odds of 1 in 32768.
        assert!(gaps.iter().any(|&g| g < 0.5), "no spread: {gaps:?}");

        // Connections reset on accept (before any byte): retried.
        let p = Proxy::start(s.port, &["--drop-rate", "0.5", "--seed", "3"]);
        for i in 0..6 {
            // A client per call: a fresh connection each time, for the proxy to drop.
            let c = p.client(fast(10), Timeouts::default(), false);
            c.chat(&req(&format!("Hello {i}."), 3, false))
                .await
                .unwrap();
        }
        let drops = p.events("drop").len();
        assert!(drops >= 1);
        assert_eq!(p.events("conn").len(), drops + 6);

        // A stream broken after its first bytes: an error, and no second attempt.
        let p = Proxy::start(s.port, &["--reset-after-bytes", "700"]);
        let c = p.client(fast(10), Timeouts::default(), false);
        let mut st = c
            .chat_stream(&req("Tell a story.", 64, true))
            .await
            .unwrap();
        let mut got = 0;
        let err = loop {
            match st.next().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the stream ended cleanly"),
            }
        };
        assert!(matches!(err, Error::Stream(_)), "{err:?}");
        assert!(got >= 1);
        assert_eq!(p.events("conn").len(), 1);
        assert_eq!(p.events("reset").len(), 1);
    });
}

#[test]
fn added_latency_does_not_become_a_retry_storm_under_the_budget() {
    let s = Server::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Proxy::start(s.port, &["--delay-ms", "300"]);
        let budget = RetryPolicy {
            max_attempts: 4,
            budget_min: 2.0,
            budget_ratio: 0.1,
            ..fast(4)
        };
        let t = Timeouts {
            first_byte: Some(Duration::from_millis(250)),
            ..Timeouts::default()
        };
        let c = p.client(budget, t, false);
        let results = futures::future::join_all((0..32).map(|i| {
            let c = c.clone();
            async move { c.chat(&req(&format!("Question {i}?"), 2, false)).await }
        }))
        .await;
        assert!(results.iter().all(|r| matches!(
            r,
            Err(Error::Timeout {
                phase: Phase::FirstByte,
                ..
            })
        )));
        // 32 first attempts, and at most the budget's 2 + 10% of 32 retries — not 32 × 3.
        let attempts = p.events("conn").len();
        assert!((32..=37).contains(&attempts), "{attempts} attempts");
    });
}

#[test]
fn h2c_streams_share_one_connection() {
    let s = Server::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Proxy::start(s.port, &[]);
        let c = p.client(RetryPolicy::none(), Timeouts::default(), true);
        let runs = futures::future::join_all((0..16).map(|i| {
            let c = c.clone();
            async move {
                let mut st = c
                    .chat_stream(&req(&format!("Count to {i}."), 6, true))
                    .await?;
                let mut n = 0;
                while let Some(ch) = st.next().await {
                    ch?;
                    n += 1;
                }
                Ok::<_, Error>(n)
            }
        }))
        .await;
        assert!(
            runs.iter().all(|r| matches!(r, Ok(n) if *n > 0)),
            "{runs:?}"
        );
        assert_eq!(p.events("conn").len(), 1);
    });
}

#[test]
fn a_retry_with_the_same_idempotency_key_runs_the_model_once() {
    use std::io::{BufRead, BufReader, Write};
    let s = Server::start(&[]);
    let finished = || s.metric("autoglm_requests_finished_total");
    let settle = |want: f64| {
        let t = Instant::now();
        while finished() < want && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Sampled, no seed: not cacheable, but retry-safe with an Idempotency-Key.
    let body = json!({"messages": [{"role": "user", "content": "Invent a word."}], "max_tokens": 40, "temperature": 1.0, "ignore_eos": true});
    let before = finished();
    // The first attempt leaves after its first token...
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let b = sbody.to_string();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(sock, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: idem-1\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
    let mut r = BufReader::new(sock);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    drop(r);
    // ...its retry attaches to the generation that went on, and gets all of it.
    let retry = s.request(
        "POST",
        "/v1/chat/completions",
        &[("Idempotency-Key", "idem-1")],
        body.to_string().as_bytes(),
    );
    assert_eq!(retry.status, 200, "{}", retry.text());
    let x = retry.headers["x-cache"].clone();
    assert!(x == "coalesced" || x == "hit-l1", "{x}");
    assert_eq!(retry.json()["usage"]["completion_tokens"], 40);
    settle(before + 1.0);
    assert_eq!(finished() - before, 1.0);
    // A later retry: answered from what was produced.
    let again = s.request(
        "POST",
        "/v1/chat/completions",
        &[("Idempotency-Key", "idem-1")],
        body.to_string().as_bytes(),
    );
    assert_eq!(again.headers["x-cache"], "hit-l1");
    assert_eq!(again.json()["choices"], retry.json()["choices"]);
    // Another key, or the same key from another API key: a new generation.
    let other_key: &[(&str, &str)] = &[("Idempotency-Key", "idem-2")];
    let other_caller: &[(&str, &str)] = &[
        ("Idempotency-Key", "idem-1"),
        ("Authorization", "Bearer someone-else"),
    ];
    for hs in [other_key, other_caller] {
        let other = s.request(
            "POST",
            "/v1/chat/completions",
            hs,
            body.to_string().as_bytes(),
        );
        assert_eq!(other.headers["x-cache"], "miss", "{hs:?}");
    }
    // Without a key, sampled requests are not kept at all.
    let plain = s.post_json("/v1/chat/completions", &body);
    assert_eq!(plain.headers["x-cache"], "bypass");

    // The SDK's own retries: every attempt times out before the answer (150 ms first-byte
    // timeout against a ~0.5 s generation), every retry carries the same Idempotency-Key,
    // and the model still runs once.
    let p = Proxy::start(s.port, &[]);
    let retry = RetryPolicy {
        max_attempts: 40,
        base: Duration::from_millis(50),
        cap: Duration::from_millis(150),
        budget_min: 100.0,
        ..RetryPolicy::default()
    };
    let t = Timeouts {
        first_byte: Some(Duration::from_millis(150)),
        ..Timeouts::default()
    };
    let c = Client::builder(format!("http://127.0.0.1:{}/v1", p.port))
        .retry(retry)
        .timeouts(t)
        .build()
        .unwrap();
    let before = finished();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sampled = api::ChatRequest::from_json(&json!({"messages": [{"role": "user", "content": "Describe a color nobody has seen."}], "max_tokens": 64, "temperature": 1.0, "ignore_eos": true})).unwrap();
    let answer = rt.block_on(c.chat(&sampled)).unwrap();
    assert_eq!(answer.usage.completion_tokens, 64);
    assert!(
        p.events("conn").len() > 1,
        "the first attempt should have timed out"
    );
    settle(before + 1.0);
    assert_eq!(finished() - before, 1.0);
}
