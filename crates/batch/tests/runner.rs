//! The runner on a fake executor: exactly-once output across a crash between appending a
//! line and committing it, and the retry of lines the server could not take yet.

use batch::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers with the request's own `n`; asks for a retry on every third call.
struct Echo(AtomicUsize);

#[async_trait::async_trait]
impl LineExecutor for Echo {
    async fn execute(&self, _: Endpoint, body: Value, _: String) -> Outcome {
        if self.0.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            return Outcome::Retry;
        }
        let n = body["prompt"].as_str().unwrap().len();
        if n == 4 {
            return Outcome::Answer {
                status: 400,
                body: json!({"error": {"message": "no"}}),
            };
        }
        Outcome::Answer {
            status: 200,
            body: json!({"n": n}),
        }
    }
}

fn input(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/completions",
                   "body": {"model": "m", "prompt": "x".repeat(i + 1)}})
            .to_string()
                + "\n"
        })
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_appended_but_not_committed_before_a_crash_is_written_once() {
    let dir = std::env::temp_dir().join(format!("batch-runner-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir).unwrap());
    let f = store
        .add_file(FilePurpose::Batch, "in.jsonl", &input(6))
        .unwrap();
    let mut b = store
        .create_batch(NewBatch {
            endpoint: Endpoint::Completions,
            input_file_id: f.id,
            completion_window: "24h".into(),
            window_secs: 86400,
            metadata: None,
        })
        .unwrap();
    // A crashed run left a line in the output file that it never committed.
    b.status = BatchStatus::InProgress;
    b.request_counts.total = 6;
    store.put_batch(&b).unwrap();
    let (out, _) = store.result_paths(&b.id);
    std::fs::write(&out, "{\"custom_id\": \"c0\", \"half written").unwrap();
    let runner = Runner::new(
        store.clone(),
        Arc::new(Echo(AtomicUsize::new(0))),
        RunnerConfig {
            concurrency: 2,
            limits: Limits {
                model_id: "m".into(),
                ..Limits::default()
            },
            retention: None,
        },
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(runner.clone().run(rx));
    let done = loop {
        let cur = store.batch(&b.id).unwrap();
        if cur.status.is_terminal() {
            break cur;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(done.status, BatchStatus::Completed, "{done:?}");
    assert_eq!(
        (done.request_counts.completed, done.request_counts.failed),
        (5, 1)
    );
    let read = |id: &Option<String>| -> Vec<Value> {
        std::fs::read_to_string(store.file_path(id.as_ref().unwrap()).unwrap())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ok = read(&done.output_file_id);
    let mut ids: Vec<&str> = ok
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["c0", "c1", "c2", "c4", "c5"]);
    let failed = read(&done.error_file_id);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["custom_id"], "c3");
    assert_eq!(failed[0]["response"]["status_code"], 400);
    let _ = std::fs::remove_dir_all(&dir);
}
