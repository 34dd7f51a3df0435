//! Runs batches: validating → in_progress → finalizing → completed (or failed, cancelled,
//! expired), oldest batch first, a bounded number of its lines at a time. Each line goes
//! to a [`LineExecutor`] (the server's own chat/completions path, in the batch priority
//! class) and its answer is appended to the output or error file and committed before
//! it counts. After a restart every unfinished batch resumes where its commits stopped.

use crate::store::Store;
use crate::types::*;
use crate::validate::{validate, InputLine, Limits};
use crate::{unix_now, Error, Result};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// What running one request gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The endpoint answered (any status): the line is done.
    Answer { status: u16, body: Value },
    /// The server cannot take it now (queue full, loading, draining): try again later.
    Retry,
}

/// Runs one request of a batch.
#[async_trait::async_trait]
pub trait LineExecutor: Send + Sync + 'static {
    async fn execute(&self, endpoint: Endpoint, body: Value, request_id: String) -> Outcome;
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Lines of a batch in flight at once.
    pub concurrency: usize,
    pub limits: Limits,
    /// Batches and files older than this are deleted (checked hourly).
    pub retention: Option<Duration>,
}

pub struct Runner {
    store: Arc<Store>,
    exec: Arc<dyn LineExecutor>,
    cfg: RunnerConfig,
    wake: Notify,
    cancels: Mutex<HashSet<String>>,
}

/// Metric names.
pub const LINES: &str = "autoglm_batch_lines_total";
pub const LINES_IN_FLIGHT: &str = "autoglm_batch_lines_in_flight";
pub const BATCHES_ENDED: &str = "autoglm_batches_ended_total";

/// Describes the batch metrics and puts every series at 0.
pub fn describe_metrics() {
    metrics::describe_counter!(LINES, "Batch request lines finished, by outcome.");
    for o in ["completed", "failed"] {
        metrics::counter!(LINES, "outcome" => o).increment(0);
    }
    metrics::describe_gauge!(LINES_IN_FLIGHT, "Batch request lines running now.");
    metrics::gauge!(LINES_IN_FLIGHT).set(0.0);
    metrics::describe_counter!(
        BATCHES_ENDED,
        "Batches that reached a final status, by status."
    );
    for s in ["completed", "failed", "cancelled", "expired"] {
        metrics::counter!(BATCHES_ENDED, "status" => s).increment(0);
    }
}

/// How a run of a batch's lines stopped.
enum Stop {
    AllDone,
    Cancelled,
    Expired,
    Shutdown,
}

/// Appends result lines durably and tracks the committed lengths.
struct Results {
    out: std::fs::File,
    err: std::fs::File,
    out_len: u64,
    err_len: u64,
}

impl Results {
    /// Opens the batch's result files cut back to their committed lengths.
    fn open(out: &Path, err: &Path, out_len: u64, err_len: u64) -> Result<Self> {
        let open = |p: &Path, len: u64| -> Result<std::fs::File> {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            // Anything past the committed length was written by a run that crashed
            // before recording it: that line will run again.
            f.set_len(len)?;
            f.sync_all()?;
            Ok(f)
        };
        Ok(Self {
            out: open(out, out_len)?,
            err: open(err, err_len)?,
            out_len,
            err_len,
        })
    }

    /// Appends `line` to the output (`ok`) or error file and syncs it.
    fn append(&mut self, ok: bool, line: &Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(|e| Error::Corrupt(e.to_string()))?;
        bytes.push(b'\n');
        let (f, len) = if ok {
            (&mut self.out, &mut self.out_len)
        } else {
            (&mut self.err, &mut self.err_len)
        };
        f.write_all(&bytes)?;
        f.sync_data()?;
        *len += bytes.len() as u64;
        Ok(())
    }
}

fn request_id() -> String {
    format!("batch-req-{}", uuid::Uuid::new_v4().simple())
}

fn answer_line(l: &InputLine, status: u16, request_id: &str, body: Value) -> Value {
    json!({
        "id": format!("batch_req_{}", uuid::Uuid::new_v4().simple()),
        "custom_id": l.custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": null,
    })
}

fn error_line(l: &InputLine, code: &str, message: &str) -> Value {
    json!({
        "id": format!("batch_req_{}", uuid::Uuid::new_v4().simple()),
        "custom_id": l.custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Corrupt(format!("a store task failed: {e}")))?
}

impl Runner {
    pub fn new(store: Arc<Store>, exec: Arc<dyn LineExecutor>, cfg: RunnerConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            exec,
            cfg,
            wake: Notify::new(),
            cancels: Mutex::new(HashSet::new()),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.cfg.limits
    }

    /// Tells the runner that a batch was created.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks batch `id` to stop: lines in flight are abandoned, the ones done are kept,
    /// and the batch ends `cancelled`.
    pub fn cancel(&self, id: &str) -> Result<Batch> {
        let b = self.store.request_cancel(id)?;
        if b.status == BatchStatus::Cancelling {
            self.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string());
            self.wake.notify_one();
        }
        Ok(b)
    }

    fn cancel_asked(&self, id: &str) -> bool {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Runs batches until `shutdown` turns true; what is unfinished then resumes the next
    /// time a runner starts on the same store.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(keep) = self.cfg.retention {
                if last_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    last_sweep = Some(std::time::Instant::now());
                    let store = self.store.clone();
                    let cutoff = unix_now().saturating_sub(keep.as_secs());
                    match blocking(move || store.sweep(cutoff)).await {
                        Ok((b, f)) if b + f > 0 => {
                            tracing::info!(batches = b, files = f, "batch retention: deleted")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "batch retention sweep failed"),
                    }
                }
            }
            let store = self.store.clone();
            let todo = match blocking(move || store.unfinished()).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "reading the batch store failed");
                    Vec::new()
                }
            };
            if todo.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            for b in todo {
                if *shutdown.borrow() {
                    return;
                }
                let id = b.id.clone();
                if let Err(e) = self.advance(b, &mut shutdown).await {
                    tracing::error!(batch = %id, error = %e, "batch step failed; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Moves batch `b` one status on (running all its lines when it is in progress).
    async fn advance(&self, mut b: Batch, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        match b.status {
            BatchStatus::Validating => self.validate(b).await,
            BatchStatus::InProgress => self.run_lines(b, shutdown).await,
            BatchStatus::Finalizing => self.finish(b, BatchStatus::Completed).await,
            BatchStatus::Cancelling => self.finish(b, BatchStatus::Cancelled).await,
            s if s.is_terminal() => Ok(()),
            _ => {
                b.status = BatchStatus::Failed;
                self.finish(b, BatchStatus::Failed).await
            }
        }
    }

    async fn input(
        &self,
        b: &Batch,
    ) -> Result<std::result::Result<Vec<InputLine>, Vec<BatchError>>> {
        let store = self.store.clone();
        let file = b.input_file_id.clone();
        let endpoint = b.endpoint;
        let limits = self.cfg.limits.clone();
        blocking(move || {
            let path = match store.file_path(&file) {
                Ok(p) => p,
                Err(Error::NotFound { .. }) => {
                    return Ok(Err(vec![BatchError {
                        code: "invalid_file".into(),
                        message: format!("the input file {file} does not exist"),
                        param: Some("input_file_id".into()),
                        line: None,
                    }]))
                }
                Err(e) => return Err(e),
            };
            let bytes = std::fs::read(path)?;
            Ok(validate(&bytes, endpoint, &limits).map(|v| v.lines))
        })
        .await
    }

    async fn put(&self, b: &Batch) -> Result<()> {
        let store = self.store.clone();
        let b = b.clone();
        blocking(move || store.put_batch(&b)).await
    }

    async fn validate(&self, mut b: Batch) -> Result<()> {
        match self.input(&b).await? {
            Ok(lines) => {
                b.status = BatchStatus::InProgress;
                b.in_progress_at = Some(unix_now());
                b.request_counts.total = lines.len() as u64;
                self.put(&b).await?;
                tracing::info!(batch = %b.id, lines = lines.len(), "batch validated");
                Ok(())
            }
            Err(errors) => {
                tracing::info!(batch = %b.id, errors = errors.len(), "batch input refused");
                b.errors = Some(BatchErrors {
                    object: "list".into(),
                    data: errors,
                });
                self.finish(b, BatchStatus::Failed).await
            }
        }
    }

    fn expired(b: &Batch) -> bool {
        b.expires_at.is_some_and(|e| unix_now() >= e)
    }

    async fn run_lines(&self, mut b: Batch, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let lines = match self.input(&b).await? {
            Ok(l) => l,
            Err(errors) => {
                // The input changed or vanished since validation (a store edited by
                // hand): nothing more can run.
                b.errors = Some(BatchErrors {
                    object: "list".into(),
                    data: errors,
                });
                return self.finish(b, BatchStatus::Failed).await;
            }
        };
        let store = self.store.clone();
        let id = b.id.clone();
        let (done, out_len, err_len) = blocking(move || store.progress(&id)).await?;
        let (out_path, err_path) = self.store.result_paths(&b.id);
        // Appends and commits sync the disk: they run on the blocking pool, never on the
        // async workers that stream every other request's tokens.
        let mut results =
            Some(blocking(move || Results::open(&out_path, &err_path, out_len, err_len)).await?);
        let mut pending: Vec<InputLine> = lines
            .iter()
            .filter(|l| !done.contains(&l.index))
            .cloned()
            .collect();
        pending.reverse();
        let lines = Arc::new(lines);
        let mut tasks: JoinSet<(u64, String, Outcome)> = JoinSet::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let stop = loop {
            if self.cancel_asked(&b.id) {
                break Stop::Cancelled;
            }
            if Self::expired(&b) {
                break Stop::Expired;
            }
            if *shutdown.borrow() {
                break Stop::Shutdown;
            }
            while tasks.len() < self.cfg.concurrency.max(1) {
                let Some(l) = pending.pop() else { break };
                let exec = self.exec.clone();
                let endpoint = b.endpoint;
                tasks.spawn(async move {
                    let rid = request_id();
                    let mut wait = Duration::from_millis(200);
                    loop {
                        match exec.execute(endpoint, l.body.clone(), rid.clone()).await {
                            Outcome::Retry => {
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(Duration::from_secs(5));
                            }
                            answer => return (l.index, rid, answer),
                        }
                    }
                });
            }
            metrics::gauge!(LINES_IN_FLIGHT).set(tasks.len() as f64);
            if tasks.is_empty() {
                break Stop::AllDone;
            }
            tokio::select! {
                r = tasks.join_next() => {
                    let Some(r) = r else { continue };
                    let (index, rid, outcome) = r.map_err(|e| Error::Corrupt(format!("a batch line task failed: {e}")))?;
                    let Outcome::Answer { status, body } = outcome else { continue };
                    let l = &lines[index as usize];
                    let ok = (200..300).contains(&status);
                    if ok {
                        b.request_counts.completed += 1;
                    } else {
                        b.request_counts.failed += 1;
                    }
                    metrics::counter!(LINES, "outcome" => if ok { "completed" } else { "failed" }).increment(1);
                    let line = answer_line(l, status, &rid, body);
                    results = Some(self.record(results.take(), &b, index, ok, line).await?);
                }
                _ = ticker.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        };
        // Abandoned lines' generations stop when their futures are dropped.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        metrics::gauge!(LINES_IN_FLIGHT).set(0.0);
        match stop {
            Stop::Shutdown => Ok(()),
            Stop::AllDone => {
                b.status = BatchStatus::Finalizing;
                b.finalizing_at = Some(unix_now());
                self.put(&b).await?;
                self.finish(b, BatchStatus::Completed).await
            }
            Stop::Cancelled => {
                // The store may say `cancelling` already; keep the counts this run made.
                let store = self.store.clone();
                let id = b.id.clone();
                let stored = blocking(move || store.batch(&id)).await?;
                b.status = BatchStatus::Cancelling;
                b.cancelling_at = stored.cancelling_at.or(Some(unix_now()));
                self.finish(b, BatchStatus::Cancelled).await
            }
            Stop::Expired => {
                // Requests that never ran are reported in the error file, as OpenAI does.
                let store = self.store.clone();
                let id = b.id.clone();
                let (done, _, _) = blocking(move || store.progress(&id)).await?;
                for l in lines.iter().filter(|l| !done.contains(&l.index)) {
                    b.request_counts.failed += 1;
                    let line = error_line(
                        l,
                        "batch_expired",
                        "the batch expired before this request ran",
                    );
                    results = Some(
                        self.record(results.take(), &b, l.index, false, line)
                            .await?,
                    );
                }
                self.finish(b, BatchStatus::Expired).await
            }
        }
    }

    /// Appends `line` to the output (`ok`) or error file, syncs it, then commits it with
    /// `b`'s counts, on the blocking pool; hands the files back.
    async fn record(
        &self,
        results: Option<Results>,
        b: &Batch,
        index: u64,
        ok: bool,
        line: Value,
    ) -> Result<Results> {
        let mut results =
            results.ok_or_else(|| Error::Corrupt("the result files were lost".into()))?;
        let store = self.store.clone();
        let snapshot = b.clone();
        blocking(move || {
            results.append(ok, &line)?;
            store.commit_line(&snapshot, index, ok, results.out_len, results.err_len)?;
            Ok(results)
        })
        .await
    }

    /// Ends batch `b` as `status`, registering whatever output and error lines it has.
    async fn finish(&self, mut b: Batch, status: BatchStatus) -> Result<()> {
        let store = self.store.clone();
        let id = b.id.clone();
        let (_, out_len, err_len) = blocking(move || store.progress(&id)).await?;
        let (out_path, err_path) = self.store.result_paths(&b.id);
        if status != BatchStatus::Failed {
            let store = self.store.clone();
            let (op, ep, bid) = (out_path.clone(), err_path.clone(), b.id.clone());
            let (o, e) = blocking(move || {
                // Cut away lines a crash left unrecorded, then register what remains.
                Results::open(&op, &ep, out_len, err_len)?;
                let o = (out_len > 0)
                    .then(|| store.register_result(&op, &format!("{bid}_output.jsonl")))
                    .transpose()?;
                let e = (err_len > 0)
                    .then(|| store.register_result(&ep, &format!("{bid}_error.jsonl")))
                    .transpose()?;
                Ok((o, e))
            })
            .await?;
            b.output_file_id = o.map(|f| f.id);
            b.error_file_id = e.map(|f| f.id);
        }
        let now = Some(unix_now());
        match status {
            BatchStatus::Completed => {
                b.finalizing_at = b.finalizing_at.or(now);
                b.completed_at = now;
            }
            BatchStatus::Cancelled => b.cancelled_at = now,
            BatchStatus::Expired => b.expired_at = now,
            BatchStatus::Failed => b.failed_at = now,
            _ => {}
        }
        b.status = status;
        self.put(&b).await?;
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&b.id);
        metrics::counter!(BATCHES_ENDED, "status" => format!("{status:?}").to_lowercase())
            .increment(1);
        tracing::info!(
            batch = %b.id,
            status = ?status,
            completed = b.request_counts.completed,
            failed = b.request_counts.failed,
            total = b.request_counts.total,
            "batch ended"
        );
        Ok(())
    }
}
