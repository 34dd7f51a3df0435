//! Request and trace ids over real sockets: W3C `traceparent` continued, `X-Trace-ID`
//! and `X-Request-Id` taken or generated, returned on every response (errors and SSE
//! too), and in the JSON log lines of that request, the engine thread's included.

mod common;

use common::Server;
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn log_lines_of(s: &Server, trace_id: &str) -> Vec<Value> {
    s.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["trace_id"] == trace_id)
        .collect()
}

#[test]
fn trace_context_is_continued_returned_and_logged() {
    let s = Server::start(&[]);
    let body = json!({"prompt": "Hello", "max_tokens": 3, "stream": true}).to_string();
    let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let r = s.request(
        "POST",
        "/v1/completions",
        &[
            ("traceparent", &parent),
            ("tracestate", "vendor=1"),
            ("X-Request-Id", "req-abc"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.sse().last().is_some_and(|d| d == "[DONE]"));
    let h = |k: &str| r.headers.get(k).cloned().unwrap_or_default();
    assert_eq!(h("x-request-id"), "req-abc");
    assert_eq!(h("x-trace-id"), TRACE);
    let out = h("traceparent");
    let parts: Vec<&str> = out.split('-').collect();
    assert_eq!(parts.len(), 4, "{out}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    assert!(
        parts[2].len() == 16 && parts[2] != "00f067aa0ba902b7",
        "a span of our own"
    );
    assert_eq!(h("tracestate"), "vendor=1");

    // Every line of that request carries both ids: the access line, and the engine
    // thread's line about its sequence.
    let t = std::time::Instant::now();
    let lines = loop {
        let l = log_lines_of(&s, TRACE);
        let has = |m: &str| l.iter().any(|v| v["fields"]["message"] == m);
        // The access line is written when the stream's body is done.
        if (has("sequence done") && has("response")) || t.elapsed().as_secs() > 10 {
            break l;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        lines.iter().all(|v| v["span"]["request_id"] == "req-abc"),
        "{lines:?}"
    );
    let access = lines
        .iter()
        .find(|v| v["fields"]["message"] == "response")
        .expect("an access line");
    assert_eq!(access["fields"]["status"], 200);
    assert_eq!(access["fields"]["route"], "/v1/completions");
    assert_eq!(access["span"]["span_id"], parts[2]);
    assert_eq!(access["fields"]["prompt_tokens"], 1);
    assert_eq!(access["fields"]["completion_tokens"], 3);
    assert_eq!(access["fields"]["cache"], r.headers["x-cache"].as_str());
    let engine = lines
        .iter()
        .find(|v| v["fields"]["message"] == "sequence done")
        .expect("the engine thread's line");
    assert_eq!(engine["fields"]["generated"], 3);
    assert_eq!(engine["fields"]["prompt_tokens"], 1);
    assert!(engine["fields"]["queue_ms"].as_f64().is_some());
    assert_ne!(engine["threadName"], access["threadName"]);

    // No traceparent: X-Trace-ID names the trace; without either, one is made up. Error
    // responses carry the ids too.
    let x = "0af7651916cd43dd8448eb211c80319c";
    let r = s.request("GET", "/v1/nothing", &[("X-Trace-ID", x)], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.headers.get("x-trace-id").map(String::as_str), Some(x));
    assert!(r.headers["traceparent"].starts_with(&format!("00-{x}-")));
    let r = s.request("POST", "/v1/completions", &[], b"{not json");
    assert_eq!(r.status, 400);
    let fresh = r.headers["x-trace-id"].clone();
    assert!(fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!r.headers["x-request-id"].is_empty());
    // An invalid traceparent starts a new trace instead of continuing garbage.
    let r = s.request(
        "GET",
        "/v1/models",
        &[(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["x-trace-id"], "00000000000000000000000000000000");
}
