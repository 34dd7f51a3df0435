//! The server under abuse, black-box, over real sockets: slow and idle clients, stalled
//! bodies, requests that could never fit, protocol details, the shutdown drain.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Whether the server has closed `s` (reads EOF or a reset) within `within`.
fn closed_by_server(mut s: &TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_idle_and_stalled_clients_are_cut_off_while_normal_requests_go_on() {
    let s = Server::start(&[
        "--header-timeout-s",
        "2",
        "--body-timeout-s",
        "2",
        "--idle-timeout-s",
        "3",
    ]);
    let port = s.port;
    let request = || {
        let t = Instant::now();
        let r = s.post_json(
            "/v1/completions",
            &json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        t.elapsed()
    };
    let quiet: Vec<Duration> = (0..4).map(|_| request()).collect();
    println!("normal request latency on a quiet server: {quiet:?}");
    // 500 slowloris connections dribbling one header byte a second, 1,000 idle ones.
    let mut slow: Vec<TcpStream> = (0..500).map(|_| connect(port)).collect();
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(port)).collect();
    let header = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
    let started = Instant::now();
    let mut latencies = Vec::new();
    for tick in 0..4 {
        for c in &mut slow {
            let _ = c.write_all(&header[tick..tick + 1]);
        }
        let t = Instant::now();
        let r = s.post_json(
            "/v1/completions",
            &json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1000).saturating_sub(t.elapsed()));
    }
    let worst = latencies.iter().max().unwrap();
    println!("normal request latency beside 500 slowloris + 1000 idle connections: {latencies:?} (worst {worst:?})");
    assert!(started.elapsed() >= Duration::from_secs(3));
    // By now (more than the 2 s header timeout) every slow and idle connection is gone.
    let slow_closed = slow
        .iter()
        .filter(|c| closed_by_server(c, Duration::from_secs(3)))
        .count();
    let idle_closed = idle
        .iter()
        .filter(|c| closed_by_server(c, Duration::from_secs(3)))
        .count();
    println!("closed by the server: {slow_closed}/500 slowloris, {idle_closed}/1000 idle");
    assert_eq!(slow_closed, 500);
    assert_eq!(idle_closed, 1000);

    // A body that stops after 10 of its 100 bytes: 408, not a connection held forever.
    let mut c = connect(port);
    write!(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\":").unwrap();
    let t = Instant::now();
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // Still serving.
    assert_eq!(s.request("GET", "/health", &[], b"").status, 200);
}

#[test]
fn a_request_that_could_never_be_queued_is_a_400_not_a_429() {
    let s = Server::start(&["--max-waiting", "4"]);
    let r = s.post_json(
        "/v1/completions",
        &json!({"prompt": ["a", "b", "c"], "n": 2, "max_tokens": 2}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["param"], "n");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-waiting"));
    assert!(!r.headers.contains_key("retry-after"));
    let ok = s.post_json(
        "/v1/completions",
        &json!({"prompt": ["a", "b"], "n": 2, "max_tokens": 2}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["choices"].as_array().unwrap().len(), 4);
}

#[test]
fn contracts_and_protocol_details() {
    let s = &Server::start(&["--api-key", "sk-abc", "--max-body-bytes", "2000"]);
    let auth = ("Authorization", "bearer sk-abc");
    let post = |path: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![auth];
        h.extend_from_slice(headers);
        s.request("POST", path, &h, body)
    };
    // Fields whose contract is not implemented are refused by name, never ignored.
    for (field, value) in [
        ("functions", json!([{"name": "f", "parameters": {}}])),
        ("function_call", json!("auto")),
        ("best_of", json!(3)),
    ] {
        let mut b = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        b[field] = value;
        let r = post("/v1/chat/completions", &[], b.to_string().as_bytes());
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], field);
    }
    let r = post(
        "/v1/completions",
        &[],
        json!({"prompt": "x", "suffix": "y"}).to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("suffix"))
    );
    let r = post(
        "/v1/chat/completions",
        &[],
        json!({"messages": [{"role": "user", "content": null}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("messages[0].content"))
    );
    // logit_bias works: banning the greedy token changes the first token.
    let body = |bias: Value| json!({"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0, "logit_bias": bias, "logprobs": 1});
    let plain = post(
        "/v1/completions",
        &[],
        body(json!({})).to_string().as_bytes(),
    )
    .json();
    let first = plain["choices"][0]["logprobs"]["tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    let tok = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args([
            "generate",
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "1",
            "--temperature",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let tok: Value = serde_json::from_slice(&tok.stdout).unwrap();
    let id = tok["token_ids"][0]
        .as_u64()
        .expect("generate --json reports token ids");
    let banned = post(
        "/v1/completions",
        &[],
        body(json!({id.to_string(): -100})).to_string().as_bytes(),
    )
    .json();
    let other = banned["choices"][0]["logprobs"]["tokens"][0]
        .as_str()
        .unwrap();
    assert_ne!(other, first, "a -100 bias bans the token");
    let r = post(
        "/v1/completions",
        &[],
        body(json!({"99999999": 1})).to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, json!("logit_bias"))
    );

    // The chat message carries refusal: null, as OpenAI's schema requires.
    let r = post(
        "/v1/chat/completions",
        &[],
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            .to_string()
            .as_bytes(),
    );
    let msg = &r.json()["choices"][0]["message"];
    assert!(
        msg.as_object().unwrap().contains_key("refusal") && msg["refusal"].is_null(),
        "{msg}"
    );
    // A wrong key, a missing one: 401; the scheme is case-insensitive (above).
    let r = s.request(
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sk-abd")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        s.request(
            "GET",
            "/v1/models",
            &[("Authorization", "BEARER sk-abc")],
            b""
        )
        .status,
        200
    );
    // 404 and 405 are OpenAI-shaped.
    let r = s.request("GET", "/v1/nothing", &[auth], b"");
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let r = s.request("GET", "/v1/chat/completions", &[auth], b"");
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (405, json!("method_not_allowed"))
    );
    // Content-Encoding: gzip is accepted (the limit applies after decompression); other
    // encodings are 415.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!({"prompt": "Hi", "max_tokens": 2})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let gz = gz.finish().unwrap();
    let r = post("/v1/completions", &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post("/v1/completions", &[("Content-Encoding", "br")], b"xx");
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (415, json!("unsupported_content_encoding"))
    );
    let big = json!({"prompt": "a ".repeat(20_000)}).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(
        gz.len() < 2000,
        "the compressed body fits the limit, the decompressed one does not"
    );
    let r = post("/v1/completions", &[("Content-Encoding", "gzip")], &gz);
    assert_eq!(r.status, 413, "{}", r.text());
    // Over h2c a too-large body still gets its 413 (not a reset).
    let file = std::env::temp_dir().join(format!("autoglm-big-{}.json", s.port));
    std::fs::write(&file, &big).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
            "-H",
            "Authorization: Bearer sk-abc",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("http://127.0.0.1:{}/v1/completions", s.port),
        ])
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {} {text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.ends_with("2 413") && text.contains("body_too_large"),
        "{text}"
    );
}

#[test]
fn the_role_chunk_comes_with_the_first_token_not_before_prefill() {
    let s = Server::start(&[]);
    let long = "word ".repeat(600);
    let mut r = s.open_stream("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": long}], "max_tokens": 3, "stream": true, "temperature": 0, "ignore_eos": true}));
    let mut first = None;
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 {
        if let Some(d) = line.trim().strip_prefix("data: ") {
            first = Some(serde_json::from_str::<Value>(d).unwrap());
            break;
        }
        line.clear();
    }
    let delta = &first.unwrap()["choices"][0]["delta"];
    assert_eq!(delta["role"], "assistant");
    assert!(
        delta["content"].as_str().is_some_and(|c| !c.is_empty()),
        "the first chunk carries the first token: {delta}"
    );
}

#[test]
fn the_drain_answers_503_and_cuts_streams_with_an_error_event_at_the_deadline() {
    let mut s = Server::start(&["--shutdown-grace-s", "2"]);
    let mut stream = s.open_stream(
        "/v1/completions",
        &json!({"prompt": "Once", "max_tokens": 8000, "ignore_eos": true, "stream": true}),
    );
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    // A kept-alive connection opened before the signal.
    let mut kept = connect(s.port);
    write!(kept, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // During the drain: the kept-alive connection and new ones get 503; so does /health.
    let body = json!({"prompt": "x", "max_tokens": 2}).to_string();
    write!(kept, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let n = kept.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("shutting_down"),
        "{text}"
    );
    assert_eq!(s.request("GET", "/health", &[], b"").status, 503);
    assert_eq!(
        s.post_json("/v1/completions", &json!({"prompt": "x"}))
            .status,
        503
    );
    // At the end of the grace period the stream ends with an OpenAI-shaped error event.
    let mut events = Vec::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(d) = line.trim().strip_prefix("data: ") {
            events.push(d.to_string());
        }
    }
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Peak resident memory of a process (VmHWM), bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb << 10
}

/// 1 GiB of zeros, compressed by `encoding` without ever holding the GiB.
fn bomb(encoding: &str) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    if encoding == "gzip" {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..1024 {
            w.write_all(&zeros).unwrap();
        }
        return w.finish().unwrap();
    }
    let mut w = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    for _ in 0..1024 {
        w.write_all(&zeros).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn a_compression_bomb_gets_413_quickly_with_bounded_memory() {
    let s = Server::start(&["--max-body-bytes", "1048576"]);
    // A request first, so the model's pages are resident before the peak is read.
    let warm = s.post_json("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 2}));
    assert_eq!(warm.status, 200, "{}", warm.text());
    let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    zs.write_all(
        json!({"prompt": "Hi", "max_tokens": 2})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("Content-Encoding", "zstd")],
        &zs.finish().unwrap(),
    );
    assert_eq!(r.status, 200, "zstd bodies are accepted: {}", r.text());
    for encoding in ["zstd", "gzip"] {
        let body = bomb(encoding);
        let before = peak_rss(s.child.id());
        let t = Instant::now();
        let r = s.request(
            "POST",
            "/v1/completions",
            &[("Content-Encoding", encoding)],
            &body,
        );
        let took = t.elapsed();
        let grew = peak_rss(s.child.id()).saturating_sub(before);
        println!(
            "{encoding} bomb: {} KiB -> 1 GiB, answered {} in {took:?}, peak RSS grew {} KiB",
            body.len() >> 10,
            r.status,
            grew >> 10
        );
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (413, json!("body_too_large"))
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
        // gzip's window is 32 KiB; zstd's is what the frame asks, up to RFC 9659's 8 MiB.
        let window = if encoding == "zstd" { 8 << 20 } else { 0 };
        assert!(grew < window + (4 << 20), "peak RSS grew {grew} bytes");
    }
    // A zstd frame that asks for a 128 MiB window is refused before anything is allocated.
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    z.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
        .unwrap();
    z.write_all(&vec![b' '; 1 << 20]).unwrap();
    let before = peak_rss(s.child.id());
    let r = s.request(
        "POST",
        "/v1/completions",
        &[("Content-Encoding", "zstd")],
        &z.finish().unwrap(),
    );
    let grew = peak_rss(s.child.id()).saturating_sub(before);
    println!(
        "zstd frame with a 128 MiB window: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(grew < 4 << 20, "peak RSS grew {grew} bytes");
}
