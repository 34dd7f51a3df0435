//! `autoglm chaos-proxy` in front of a test server, and its JSON-lines log.

use autoglm_client::{Client, RetryPolicy, Timeouts};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proxy {
    pub port: u16,
    log: std::path::PathBuf,
    child: Child,
}

impl Proxy {
    pub fn start(upstream: u16, extra: &[&str]) -> Proxy {
        let port = super::free_port();
        let log = std::env::temp_dir().join(format!("autoglm-chaos-{port}.jsonl"));
        let _ = std::fs::remove_file(&log);
        let child = Command::new(env!("CARGO_BIN_EXE_autoglm"))
            .args(["chaos-proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{upstream}")])
            .args(["--log", log.to_str().unwrap()])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening")
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "chaos-proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { port, log, child }
    }

    pub fn events(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == kind)
            .collect()
    }

    pub fn client(&self, retry: RetryPolicy, timeouts: Timeouts, h2: bool) -> Client {
        Client::builder(format!("http://127.0.0.1:{}/v1", self.port))
            .header("Cache-Control", "no-store")
            .retry(retry)
            .timeouts(timeouts)
            .http2_prior_knowledge(h2)
            .build()
            .unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
