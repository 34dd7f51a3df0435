//! What tracing one request costs: the spans a generation request makes (its server
//! span, a generation span with one choice's report and its events, the response's
//! attributes), timed on the request's own thread, and the whole process's CPU time
//! once everything is exported (the batching thread's encoding and HTTP included) to a
//! local receiver that accepts every export.
//!   cargo run --release -p server --example tracing_cost [REQUESTS]

use server::otel::genai::{ChoiceReport, GenerationInfo, GenerationTrace};
use server::otel::server_span;
use server::trace::TraceContext;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A keep-alive HTTP/1.1 endpoint answering every request with an empty 200.
fn receiver() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (posts, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, b) = (posts.clone(), bytes.clone());
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let (p, b) = (p.clone(), b.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    p.fetch_add(1, Ordering::Relaxed);
                    b.fetch_add(len, Ordering::Relaxed);
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, posts, bytes)
}

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given and nothing else.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let (port, posts, bytes) = receiver();
    let mut cfg = server::TracingConfig::new(format!("http://127.0.0.1:{port}"));
    // Room for every span: the point is what exporting them costs, not the drops.
    cfg.queue_capacity = 2 * n + 16;
    let t = server::Tracing::start(&cfg).unwrap();
    let headers = axum::http::HeaderMap::new();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for i in 0..n {
        let mut trace = TraceContext::from_headers(&headers);
        let cx = server_span::start(
            &t,
            &mut trace,
            "POST",
            "/v1/chat/completions",
            "/v1/chat/completions",
            Some("tracing_cost"),
        );
        let info = GenerationInfo {
            operation: "chat",
            model: "SmolLM2-135M-Instruct",
            request_id: "req",
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: Some(128),
            seed: None,
            n: 1,
            choices: 1,
        };
        let g = GenerationTrace::start(&t, &cx, &info).expect("sampled");
        let now = Instant::now();
        g.report(
            0,
            ChoiceReport {
                scheduled: Some(now),
                first_token: Some(now),
                last_token: Some(now),
                prompt_tokens: 40,
                completion_tokens: 128,
                finish: Some("length"),
                ..Default::default()
            },
        );
        drop(g);
        server_span::record_response(&cx, 200, &format!("req-{i}"), "miss");
        server_span::record_tokens(&cx, 40, 128);
        server_span::end(&cx);
    }
    let on_request_path = start.elapsed();
    t.shutdown(Duration::from_secs(30));
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{n} traced requests ({} spans): {:.1} µs each on the request's thread; {:.1} µs of CPU each in all, export included; {} exports, {:.0} bytes per request",
        2 * n,
        on_request_path.as_secs_f64() * 1e6 / n as f64,
        cpu * 1e6 / n as f64,
        posts.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / n as f64,
    );
}
