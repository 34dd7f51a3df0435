//! A model step that panics (a test-only executor behind the real server, real sockets):
//! the request in flight and later ones get 503 `engine_failed`, a stream ends with that
//! error event, `/health` turns 503, and the metric says so.

use engine::{BlockCopy, EngineConfig, EngineHandle, Executor, ExecutorInfo};
use model::{Logits, SeqInput};
use server::{AppState, Loaded, ServerConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

struct PanicsOnForward {
    vocab: usize,
}

impl Executor for PanicsOnForward {
    fn info(&self) -> ExecutorInfo {
        ExecutorInfo {
            vocab_size: self.vocab,
            context_length: 2048,
            n_blocks: 64,
            block_size: 16,
        }
    }
    fn copy_block_prefix(&mut self, _: &BlockCopy) {}
    fn forward(&mut self, _: &[SeqInput]) -> Result<Logits, String> {
        panic!("injected fault: the model step panicked");
    }
}

fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

/// The real server, with the real tokenizer, on a 127.0.0.1 port, in front of an
/// engine whose every step panics. The runtime must outlive the test's requests.
fn serve_with_a_panicking_engine(
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> (tokio::runtime::Runtime, u16) {
    let path = model::paths::test_model_path(&|k| std::env::var_os(k));
    let f = gguf::GgufFile::open(&path).unwrap();
    let tokenizer = Arc::new(tokenizer::Tokenizer::from_gguf(&f).unwrap());
    let state = AppState::new(ServerConfig::default(), metrics);
    let engine = EngineHandle::start_with(
        PanicsOnForward {
            vocab: tokenizer.vocab_size(),
        },
        EngineConfig::default(),
    );
    state.set_loaded(Loaded {
        engine,
        tokenizer,
        template: None,
        fingerprint: "panicking-engine".into(),
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(server::serve_on(
        state,
        listener,
        std::future::pending::<()>(),
    ));
    (rt, port)
}

#[test]
fn a_panicking_model_step_gives_503_engine_failed_and_an_unhealthy_server() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let (_rt, port) = serve_with_a_panicking_engine(Some(recorder));
    assert_eq!(request(port, "GET", "/health", "").0, 200);
    let (status, body) = request(
        port,
        "POST",
        "/v1/completions",
        r#"{"prompt":"Hello","max_tokens":4}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"code\":\"engine_failed\"") && body.contains("injected fault"),
        "{body}"
    );
    // Later requests, streaming or not, are refused the same way, before running.
    let (status, body) = request(
        port,
        "POST",
        "/v1/completions",
        r#"{"prompt":"Hi","stream":true}"#,
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("engine_failed"));
    let (status, body) = request(port, "GET", "/health", "");
    assert_eq!(status, 503);
    assert!(body.contains("\"status\":\"engine_failed\""), "{body}");
    let (_, metrics) = request(port, "GET", "/metrics", "");
    assert!(
        metrics.lines().any(|l| l == "autoglm_engine_failed 1"),
        "{metrics}"
    );
}

#[test]
fn a_stream_in_flight_when_the_engine_fails_ends_with_an_engine_failed_event() {
    // The stream's status line (200) is sent once the request is queued; the failure
    // then arrives as its last event.
    let (_rt, port) = serve_with_a_panicking_engine(None);
    let (status, body) = request(
        port,
        "POST",
        "/v1/completions",
        r#"{"prompt":"Hello","max_tokens":4,"stream":true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let last = body.lines().rfind(|l| l.starts_with("data: ")).unwrap();
    assert!(last.contains("\"code\":\"engine_failed\""), "{body}");
    assert!(!body.contains("[DONE]"));
}
