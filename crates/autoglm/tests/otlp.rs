//! OpenTelemetry traces over real sockets: a real `autoglm serve` exports to a real
//! OTLP/HTTP receiver (decoding with the official protobuf definitions), and the spans
//! that arrive have the right ids, parents, attributes and events. A collector that is
//! down or hangs costs counted spans, never a request.

mod common;

use common::otlp_receiver::{float, hex, int, string, strings, Receiver, Span};
use common::Server;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const FAST_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "100")];
const SERVER: i32 = 2;
const INTERNAL: i32 = 1;

fn traceparent(trace: &str, parent: &str, sampled: bool) -> String {
    format!("00-{trace}-{parent}-{}", if sampled { "01" } else { "00" })
}

fn named<'a>(spans: &'a [Span], prefix: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no span {prefix}…: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
}

fn event_names(s: &Span) -> Vec<&str> {
    s.events.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn spans_arrive_with_their_parents_attributes_and_events() {
    let rx = Receiver::start();
    let s = Server::start_env(&["--otlp-traces-endpoint", &rx.endpoint()], FAST_EXPORT);

    // A chat request under a caller's sampled trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let body = json!({
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 5, "temperature": 0.5, "top_p": 0.75, "seed": 11,
    });
    let r = s.request(
        "POST",
        "/v1/chat/completions",
        &[
            ("traceparent", &traceparent(trace, caller, true)),
            ("X-Request-Id", "req-otlp-1"),
            ("User-Agent", "otlp-test"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = r.json()["usage"].clone();
    let ours = r.headers["traceparent"]
        .split('-')
        .nth(2)
        .unwrap()
        .to_string();
    assert!(r.headers["traceparent"].ends_with("-01"));

    let spans = rx.wait_for(trace, 2);
    assert_eq!(spans.len(), 2, "{spans:?}");
    let server = named(&spans, "POST /v1/chat/completions");
    assert_eq!(server.kind, SERVER);
    assert_eq!(hex(&server.span_id), ours, "the id in the response header");
    assert_eq!(hex(&server.parent_span_id), caller, "the caller's span");
    assert_eq!(string(server, "http.request.method"), "POST");
    assert_eq!(string(server, "http.route"), "/v1/chat/completions");
    assert_eq!(string(server, "user_agent.original"), "otlp-test");
    assert_eq!(int(server, "http.response.status_code"), 200);
    assert_eq!(string(server, "autoglm.request_id"), "req-otlp-1");
    assert_eq!(string(server, "autoglm.cache"), "miss");

    let generation = named(&spans, "chat ");
    assert_eq!(generation.kind, INTERNAL);
    assert_eq!(generation.parent_span_id, server.span_id);
    assert_eq!(string(generation, "gen_ai.operation.name"), "chat");
    assert!(!string(generation, "gen_ai.request.model").is_empty());
    assert_eq!(float(generation, "gen_ai.request.temperature"), 0.5);
    assert_eq!(float(generation, "gen_ai.request.top_p"), 0.75);
    assert_eq!(int(generation, "gen_ai.request.max_tokens"), 5);
    assert_eq!(int(generation, "gen_ai.request.seed"), 11);
    assert_eq!(string(generation, "gen_ai.request.id"), "req-otlp-1");
    let prompt = usage["prompt_tokens"].as_i64().unwrap();
    let completion = usage["completion_tokens"].as_i64().unwrap();
    assert_eq!(int(generation, "gen_ai.usage.input_tokens"), prompt);
    assert_eq!(int(generation, "gen_ai.usage.output_tokens"), completion);
    assert_eq!(int(server, "gen_ai.usage.output_tokens"), completion);
    let finish = r.json()["choices"][0]["finish_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        strings(generation, "gen_ai.response.finish_reasons"),
        [finish]
    );
    // vLLM's breakdown: queue then prefill make up the time to first token, which,
    // like decode, fits in the end-to-end time.
    let lat = |k: &str| float(generation, &format!("gen_ai.latency.{k}"));
    let (queue, prefill, ttft) = (
        lat("time_in_queue"),
        lat("time_in_model_prefill"),
        lat("time_to_first_token"),
    );
    assert!(queue >= 0.0 && prefill > 0.0, "{queue} {prefill}");
    assert!(
        (queue + prefill - ttft).abs() < 1e-6,
        "{queue}+{prefill} vs {ttft}"
    );
    assert!(ttft + lat("time_in_model_decode") <= lat("e2e") + 1e-6);
    assert!(lat("time_in_model_inference") >= lat("time_in_model_decode"));
    assert_eq!(event_names(generation), ["scheduled", "first_token"]);
    let inside =
        |t: u64| t >= generation.start_time_unix_nano && t <= generation.end_time_unix_nano;
    assert!(generation.events.iter().all(|e| inside(e.time_unix_nano)));
    assert!(server.start_time_unix_nano <= generation.start_time_unix_nano);
    assert!(server.end_time_unix_nano >= generation.end_time_unix_nano);
    assert!(rx.service_names().iter().all(|n| n == "autoglm"));

    // The same request again is answered from the response cache: a server span that
    // says so, and no generation span.
    let trace2 = "5bf92f3577b34da6a3ce929d0e0e4737";
    let r = s.request(
        "POST",
        "/v1/chat/completions",
        &[("traceparent", &traceparent(trace2, caller, true))],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.headers["x-cache"], "hit-l1");
    let spans = rx.wait_for(trace2, 1);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(string(&spans[0], "autoglm.cache"), "hit-l1");

    // A caller that does not sample its trace is followed: nothing recorded, and the
    // traceparent sent back says so.
    let unsampled = "6bf92f3577b34da6a3ce929d0e0e4738";
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("traceparent", &traceparent(unsampled, caller, false))],
        json!({"prompt": "Hi", "max_tokens": 2})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers["traceparent"].ends_with("-00"));

    // A stream the client leaves early: its generation span says it was cancelled.
    let trace3 = "7bf92f3577b34da6a3ce929d0e0e4739";
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let b = json!({"prompt": "Once upon a time", "max_tokens": 400, "stream": true, "ignore_eos": true})
        .to_string();
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\ntraceparent: {}\r\nContent-Length: {}\r\n\r\n{b}",
        traceparent(trace3, caller, true),
        b.len()
    )
    .unwrap();
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let spans = rx.wait_for(trace3, 2);
    let generation = named(&spans, "text_completion ");
    assert_eq!(
        event_names(generation).last(),
        Some(&"cancelled"),
        "{generation:?}"
    );
    assert_eq!(
        strings(generation, "gen_ai.response.finish_reasons"),
        ["abort"]
    );
    assert!(int(generation, "gen_ai.usage.output_tokens") < 400);

    // By now the unsampled request's spans would have been exported with the others.
    assert!(rx.wait_for(unsampled, 1).is_empty());
    let exported = s.metric("autoglm_otlp_spans_exported_total");
    assert!(exported >= 5.0, "{exported}");
}

#[test]
fn preemptions_are_span_events() {
    let rx = Receiver::start();
    // 192 KV tokens for six sequences of 80: the scheduler must preempt.
    let s = Server::start_env(
        &[
            "--otlp-traces-endpoint",
            &rx.endpoint(),
            "--kv-cache-tokens",
            "192",
            "--block-size",
            "16",
            "--no-cache",
        ],
        FAST_EXPORT,
    );
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|i| (0..40).map(|t| 300 + i * 50 + t).collect())
        .collect();
    let trace = "8bf92f3577b34da6a3ce929d0e0e4740";
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("traceparent", &traceparent(trace, "00f067aa0ba902b7", true))],
        json!({"prompt": prompts, "max_tokens": 40, "temperature": 0, "ignore_eos": true})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.metric("autoglm_num_preemptions_total") > 0.0);
    let spans = rx.wait_for(trace, 2);
    let generation = named(&spans, "text_completion ");
    let names = event_names(generation);
    assert!(names.contains(&"preempted"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "scheduled").count(), 6);
    assert_eq!(int(generation, "gen_ai.usage.num_sequences"), 6);
    assert_eq!(
        int(generation, "gen_ai.usage.output_tokens"),
        r.json()["usage"]["completion_tokens"].as_i64().unwrap()
    );
}

#[test]
fn ratio_zero_records_new_traces_never_but_follows_sampled_callers() {
    let rx = Receiver::start();
    let s = Server::start_env(
        &[
            "--otlp-traces-endpoint",
            &format!("{}/v1/traces", rx.endpoint()),
            "--otlp-sample-ratio",
            "0",
        ],
        FAST_EXPORT,
    );
    let r = s.post_json("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 2}));
    assert_eq!(r.status, 200);
    let fresh = r.headers["x-trace-id"].clone();
    assert!(r.headers["traceparent"].ends_with("-00"));
    let trace = "9bf92f3577b34da6a3ce929d0e0e4741";
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("traceparent", &traceparent(trace, "00f067aa0ba902b7", true))],
        json!({"prompt": "Hello", "max_tokens": 2})
            .to_string()
            .as_bytes(),
    );
    assert!(r.headers["traceparent"].ends_with("-01"));
    assert_eq!(rx.wait_for(trace, 2).len(), 2);
    assert!(rx.wait_for(&fresh, 1).is_empty());
}

fn complete_all(s: &Server, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let r = s.post_json(
                "/v1/completions",
                &json!({"prompt": format!("Count {i}"), "max_tokens": 3}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        })
        .collect()
}

#[test]
fn a_collector_down_or_hanging_costs_counted_spans_never_requests() {
    // Nothing listens: every export fails at once.
    let down = common::free_port();
    let s = Server::start_env(
        &[
            "--otlp-traces-endpoint",
            &format!("http://127.0.0.1:{down}"),
        ],
        FAST_EXPORT,
    );
    assert_eq!(complete_all(&s, 8).len(), 8);
    let t = std::time::Instant::now();
    let failed = loop {
        let body = s.request("GET", "/metrics", &[], b"").text();
        let failed: f64 = body
            .lines()
            .filter(|l| {
                l.starts_with("autoglm_otlp_spans_dropped_total")
                    && l.contains("reason=\"export_failed\"")
            })
            .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
            .sum();
        if failed >= 16.0 || t.elapsed() > Duration::from_secs(20) {
            break failed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Two spans a request: server and generation.
    assert!(failed >= 16.0, "{failed}");
    assert_eq!(s.metric("autoglm_otlp_spans_exported_total"), 0.0);

    // A collector that accepts connections and never answers: exports hang until
    // their timeout while the small queue fills, and requests go on regardless.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = Server::start_env(
        &[
            "--otlp-traces-endpoint",
            &format!("http://127.0.0.1:{}", hang.local_addr().unwrap().port()),
        ],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
        ],
    );
    assert_eq!(complete_all(&s, 12).len(), 12);
    let body = s.request("GET", "/metrics", &[], b"").text();
    let full: f64 = body
        .lines()
        .filter(|l| {
            l.starts_with("autoglm_otlp_spans_dropped_total") && l.contains("reason=\"queue_full\"")
        })
        .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
        .sum();
    assert!(full > 0.0, "{body}");
}
