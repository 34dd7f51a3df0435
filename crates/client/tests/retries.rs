//! The retry table and the timeouts, against a scripted HTTP/1.1 server on 127.0.0.1
//! that answers each attempt as told and records when each arrived and what it carried.

use autoglm_client::{Client, Error, Phase, RetryPolicy, Timeouts};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
enum Answer {
    Raw(String),
    /// Read the request, then say nothing.
    Hang,
}

fn status(code: u16, extra: &str) -> Answer {
    let body = format!(
        r#"{{"error":{{"message":"scripted {code}","type":"server_error","param":null,"code":null}}}}"#
    );
    Answer::Raw(format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    ))
}

fn ok_chat() -> Answer {
    let body = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    Answer::Raw(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

struct Seen {
    at: Instant,
    headers: HashMap<String, String>,
}

struct Script {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn script(answers: Vec<Answer>) -> Script {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p);
                }
            };
            let Some(end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            log.lock().unwrap().push(Seen {
                at: Instant::now(),
                headers,
            });
            match answers.next() {
                Some(Answer::Raw(r)) => {
                    let _ = s.write_all(r.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
                Some(Answer::Hang) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(s);
                    });
                }
                None => {}
            }
        }
    });
    Script { port, seen }
}

fn request() -> api::ChatRequest {
    api::ChatRequest::from_json(
        &serde_json::json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}),
    )
    .unwrap()
}

fn client(port: u16, retry: RetryPolicy, timeouts: Timeouts) -> Client {
    Client::builder(format!("http://127.0.0.1:{port}/v1"))
        .retry(retry)
        .timeouts(timeouts)
        .build()
        .unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(80),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn retryable_statuses_are_retried_with_the_same_ids_and_the_servers_wait() {
    let s = script(vec![
        status(503, "retry-after-ms: 150\r\n"),
        status(429, "Retry-After: 0\r\n"),
        status(502, ""),
        ok_chat(),
    ])
    .await;
    let c = client(s.port, quick(), Timeouts::default());
    let r = c.chat(&request()).await.unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("hi"));
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    let id = &seen[0].headers["x-request-id"];
    for (i, a) in seen.iter().enumerate() {
        assert_eq!(&a.headers["x-request-id"], id);
        assert_eq!(&a.headers["idempotency-key"], id);
        assert_eq!(a.headers["x-attempt"], (i + 1).to_string());
    }
    // retry-after-ms: 150 honoured; Retry-After: 0 means at once; then full jitter under
    // min(cap, base·2^2) = 80 ms.
    let gap = |i: usize| seen[i].at - seen[i - 1].at;
    assert!(gap(1) >= Duration::from_millis(150), "{:?}", gap(1));
    // (Upper bounds with slack for a loaded 2-core CI machine.)
    assert!(gap(2) < Duration::from_millis(100), "{:?}", gap(2));
    assert!(gap(3) < Duration::from_millis(80 + 120), "{:?}", gap(3));
}

#[tokio::test]
async fn other_client_errors_are_never_retried_and_x_should_retry_overrides() {
    for (answer, want) in [
        (status(400, ""), 400),
        (status(404, ""), 404),
        (status(503, "x-should-retry: false\r\n"), 503),
        // A wait beyond max_server_wait is not worth retrying.
        (status(429, "Retry-After: 3600\r\n"), 429),
    ] {
        let s = script(vec![answer, ok_chat()]).await;
        let c = client(s.port, quick(), Timeouts::default());
        match c.chat(&request()).await {
            Err(Error::Status { status, body, .. }) => {
                assert_eq!(status, want);
                assert_eq!(body.unwrap().error.message, format!("scripted {want}"));
            }
            r => panic!("{want}: {:?}", r.map(|_| ())),
        }
        assert_eq!(s.seen.lock().unwrap().len(), 1, "{want}");
    }
    let s = script(vec![status(400, "x-should-retry: true\r\n"), ok_chat()]).await;
    let c = client(s.port, quick(), Timeouts::default());
    assert!(c.chat(&request()).await.is_ok());
    assert_eq!(s.seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_silent_server_is_a_first_byte_timeout_retried_up_to_max_attempts() {
    let s = script(vec![Answer::Hang, Answer::Hang, Answer::Hang]).await;
    let t = Timeouts {
        first_byte: Some(Duration::from_millis(100)),
        ..Timeouts::default()
    };
    let c = client(
        s.port,
        RetryPolicy {
            max_attempts: 3,
            ..quick()
        },
        t,
    );
    let started = Instant::now();
    match c.chat(&request()).await {
        Err(Error::Timeout {
            phase: Phase::FirstByte,
            ..
        }) => {}
        r => panic!("{:?}", r.map(|_| ())),
    }
    assert_eq!(s.seen.lock().unwrap().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The total deadline ends the call, whatever the retry policy would still allow.
    let s = script(vec![Answer::Hang; 10]).await;
    let t = Timeouts {
        first_byte: Some(Duration::from_millis(100)),
        total: Some(Duration::from_millis(250)),
        ..Timeouts::default()
    };
    let c = client(
        s.port,
        RetryPolicy {
            max_attempts: 10,
            ..quick()
        },
        t,
    );
    let started = Instant::now();
    assert!(matches!(
        c.chat(&request()).await,
        Err(Error::Timeout { .. })
    ));
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refused_connections_are_retried_then_reported() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(
        port,
        RetryPolicy {
            max_attempts: 3,
            ..quick()
        },
        Timeouts::default(),
    );
    assert!(matches!(
        c.chat(&request()).await,
        Err(Error::Connection(_))
    ));
}

#[tokio::test]
async fn a_stream_broken_after_its_first_byte_is_an_error_and_not_retried() {
    let event = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"he"},"logprobs":null,"finish_reason":null}]}"#;
    let broken = Answer::Raw(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: {event}\n\n"
    ));
    let s = script(vec![broken, ok_chat()]).await;
    let c = client(s.port, quick(), Timeouts::default());
    let mut st = c.chat_stream(&request()).await.unwrap();
    let first = st.next().await.unwrap().unwrap();
    assert_eq!(first.choices[0].delta.content.as_deref(), Some("he"));
    assert!(matches!(st.next().await, Some(Err(Error::Stream(_)))));
    assert!(st.next().await.is_none());
    assert_eq!(s.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_across_calls() {
    let s = script(vec![status(503, ""); 20]).await;
    let budget = RetryPolicy {
        max_attempts: 5,
        budget_min: 2.0,
        budget_ratio: 0.0,
        ..quick()
    };
    let c = client(s.port, budget, Timeouts::default());
    for _ in 0..3 {
        assert!(matches!(
            c.chat(&request()).await,
            Err(Error::Status { status: 503, .. })
        ));
    }
    // Three calls, and only the two retries the budget held: five attempts, not fifteen.
    assert_eq!(s.seen.lock().unwrap().len(), 5);
}
