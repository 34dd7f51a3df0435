//! The Files and Batch API on the real server and model: through the official openai SDK
//! (batch_check.py), across a kill -9 and restart, to expiry, through retention, and
//! `autoglm run-batch` against the server's own output for the same file.

mod common;

use common::{python_check, Server};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn model() -> String {
    model::paths::DEFAULT_MODEL_FILE
        .trim_end_matches(".gguf")
        .to_string()
}

fn lines(n: usize, max_tokens: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": model(), "max_tokens": max_tokens, "temperature": 0,
                            "messages": [{"role": "user", "content": format!("Tell me fact number {i} about the sea.")}]}})
            .to_string()
                + "\n"
        })
        .collect()
}

/// Uploads `content` as a batch input file; returns its id.
fn upload(srv: &Server, content: &str) -> String {
    let b = "autoglmTestBoundary7MA4YWxk";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n--{b}--\r\n"
    );
    let ct = format!("multipart/form-data; boundary={b}");
    let r = srv.request(
        "POST",
        "/v1/files",
        &[("Content-Type", &ct)],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn create(srv: &Server, file: &str, window: &str) -> String {
    let r = srv.post_json(
        "/v1/batches",
        &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": window}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

fn get(srv: &Server, id: &str) -> Value {
    srv.request("GET", &format!("/v1/batches/{id}"), &[], b"")
        .json()
}

fn wait_until(srv: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let b = get(srv, id);
        if done(&b) {
            return b;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "batch stuck: {b}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ended(b: &Value) -> bool {
    matches!(
        b["status"].as_str(),
        Some("completed" | "failed" | "cancelled" | "expired")
    )
}

fn content(srv: &Server, file: &Value) -> Vec<Value> {
    let Some(id) = file.as_str() else {
        return Vec::new();
    };
    let r = srv.request("GET", &format!("/v1/files/{id}/content"), &[], b"");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("autoglm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_openai_sdk_runs_files_and_batches() {
    let srv = Server::start(&[]);
    python_check("batch_check.py", &[&srv.url()], "6 passed, 0 failed");
}

#[test]
fn a_kill_9_mid_batch_loses_no_line_and_runs_none_twice() {
    let dir = temp_dir("batch-crash");
    let d = dir.to_str().unwrap();
    let n = 24;
    let args = ["--batch-dir", d, "--batch-concurrency", "2", "--no-cache"];
    let mut srv = Server::start(&args);
    let file = upload(&srv, &lines(n, 24));
    let id = create(&srv, &file, "24h");
    wait_until(&srv, &id, |b| {
        b["request_counts"]["completed"].as_u64() >= Some(3)
    });
    srv.kill_hard();
    // The same store, a new process: the batch resumes by itself.
    let srv = Server::start(&args);
    let b = wait_until(&srv, &id, ended);
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["request_counts"]["completed"], n as u64, "{b}");
    let out = content(&srv, &b["output_file_id"]);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for o in &out {
        *seen
            .entry(o["custom_id"].as_str().unwrap().into())
            .or_default() += 1;
        assert_eq!(o["response"]["status_code"], 200, "{o}");
    }
    assert_eq!(out.len(), n, "every line once: {seen:?}");
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
    assert!(b["error_file_id"].is_null(), "{b}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_expired_batch_keeps_its_output_and_reports_the_rest() {
    let srv = Server::start(&["--batch-concurrency", "1", "--no-cache"]);
    let n = 30;
    let file = upload(&srv, &lines(n, 48));
    let id = create(&srv, &file, "3s");
    let b = wait_until(&srv, &id, ended);
    assert_eq!(b["status"], "expired", "{b}");
    assert!(b["expired_at"].as_u64().is_some(), "{b}");
    let rc = &b["request_counts"];
    let (done, failed) = (
        rc["completed"].as_u64().unwrap(),
        rc["failed"].as_u64().unwrap(),
    );
    assert!(done < n as u64 && done + failed == n as u64, "{b}");
    assert_eq!(content(&srv, &b["output_file_id"]).len() as u64, done);
    let errs = content(&srv, &b["error_file_id"]);
    assert_eq!(errs.len() as u64, failed);
    assert!(
        errs.iter().all(|e| e["error"]["code"] == "batch_expired"),
        "{errs:?}"
    );
}

#[test]
fn bad_requests_to_the_api_are_clear_errors() {
    let srv = Server::start(&[]);
    let file = upload(&srv, &lines(1, 4));
    for (body, param, status) in [
        (
            json!({"input_file_id": file, "endpoint": "/v1/embeddings", "completion_window": "24h"}),
            "endpoint",
            400,
        ),
        (
            json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "input_file_id",
            400,
        ),
        (
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "soon"}),
            "completion_window",
            400,
        ),
        (
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h", "output_expires_after": {"anchor": "created_at", "seconds": 3600}}),
            "output_expires_after",
            400,
        ),
        (
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {"k": 1}}),
            "metadata",
            400,
        ),
    ] {
        let r = srv.post_json("/v1/batches", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{}", r.text());
    }
    let r = srv.request("GET", "/v1/batches/batch_nope", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = srv.request("GET", "/v1/files/file-nope/content", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // Upload with a purpose this server does not run.
    let b = "B0undary";
    let body = format!("--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n{{}}\r\n--{b}--\r\n");
    let r = srv.request(
        "POST",
        "/v1/files",
        &[(
            "Content-Type",
            &format!("multipart/form-data; boundary={b}"),
        )],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "purpose");
    // An input file of a batch still running cannot be deleted.
    let id = create(&srv, &upload(&srv, &lines(20, 32)), "24h");
    let busy = get(&srv, &id)["input_file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv.request("DELETE", &format!("/v1/files/{busy}"), &[], b"");
    assert_eq!(r.status, 409, "{}", r.text());
}

fn run_batch(input: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(["run-batch", "--quiet", "-i"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "run-batch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A body without what every response makes fresh (ids, timestamps) or what depends
/// on the prefix cache's state (cached prompt tokens).
fn comparable(body: &Value) -> Value {
    let mut b = body.clone();
    let o = b.as_object_mut().unwrap();
    o.remove("id");
    o.remove("created");
    if let Some(u) = o.get_mut("usage").and_then(|u| u.as_object_mut()) {
        u.remove("prompt_tokens_details");
    }
    b
}

#[test]
fn run_batch_writes_what_the_server_writes() {
    let dir = temp_dir("run-batch");
    let input = dir.join("in.jsonl");
    let n = 6;
    std::fs::write(&input, lines(n, 20)).unwrap();
    let out = dir.join("out.jsonl");
    run_batch(&input, &out);
    let offline: HashMap<String, Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["custom_id"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(offline.len(), n);
    let srv = Server::start(&["--no-cache"]);
    let id = create(
        &srv,
        &upload(&srv, &std::fs::read_to_string(&input).unwrap()),
        "24h",
    );
    let b = wait_until(&srv, &id, ended);
    assert_eq!(b["status"], "completed", "{b}");
    for line in content(&srv, &b["output_file_id"]) {
        let cid = line["custom_id"].as_str().unwrap();
        let theirs = &offline[cid];
        assert_eq!(theirs["response"]["status_code"], 200);
        assert_eq!(
            comparable(&theirs["response"]["body"]),
            comparable(&line["response"]["body"]),
            "{cid}"
        );
    }
    // A bad file is refused before anything runs, naming its lines.
    std::fs::write(&input, "{\"custom_id\": \"a\"}\nnot json\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_autoglm"))
        .args(["run-batch", "--quiet", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("line 1") && err.contains("line 2"), "{err}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retention_deletes_old_batches_and_files_at_start() {
    let dir = temp_dir("batch-retention");
    let d = dir.to_str().unwrap();
    let srv = Server::start(&["--batch-dir", d]);
    let file = upload(&srv, &lines(1, 4));
    let id = create(&srv, &file, "24h");
    wait_until(&srv, &id, ended);
    drop(srv);
    std::thread::sleep(Duration::from_millis(2100));
    let srv = Server::start(&["--batch-dir", d, "--batch-retention", "1s"]);
    let t = Instant::now();
    loop {
        let gone = srv
            .request("GET", &format!("/v1/batches/{id}"), &[], b"")
            .status
            == 404
            && srv
                .request("GET", &format!("/v1/files/{file}"), &[], b"")
                .status
                == 404;
        if gone {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = std::fs::read_dir(dir.join("files")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
