//! Where files and batches live: one SQLite database (WAL, every commit synced) for the
//! records and which lines of a batch are done, and a `files/` directory for the bytes.
//!
//! SQLite rather than a key-value store: batches are listed newest first with a cursor,
//! files by purpose, and a finished line is one small transaction (its line number, the
//! output file's committed length and the new counts) — queries and atomic multi-row
//! updates SQLite gives for free, and an operator can inspect the store with `sqlite3`.
//!
//! Exactly-once output: a finished line is appended to the batch's output (or error)
//! file and synced *before* the transaction that records it commits. After a crash the
//! files are cut back to the committed lengths, so a line is either recorded and in the
//! file once, or neither (and runs again).

use crate::types::*;
use crate::{unix_now, Error, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Store {
    dir: PathBuf,
    db: Mutex<Connection>,
}

/// What `POST /v1/batches` asked for, validated.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub endpoint: Endpoint,
    pub input_file_id: String,
    pub completion_window: String,
    pub window_secs: u64,
    pub metadata: Option<serde_json::Value>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    json TEXT NOT NULL,
    output_len INTEGER NOT NULL DEFAULT 0,
    error_len INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    PRIMARY KEY (batch_id, line)
);
";

fn status_str(s: BatchStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed into place.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("files"))?;
        let db = Connection::open(dir.join("batches.sqlite3"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // Every commit reaches the disk before it returns: a line counted is a line kept.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self {
            dir,
            db: Mutex::new(db),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (its own transactions).
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an uploaded file.
    pub fn add_file(
        &self,
        purpose: FilePurpose,
        filename: &str,
        bytes: &[u8],
    ) -> Result<FileObject> {
        let id = new_id("file-");
        let rel = format!("files/{id}");
        write_durably(&self.dir.join(&rel), bytes)?;
        self.insert_file(&id, purpose, filename, bytes.len() as u64, &rel)
    }

    fn insert_file(
        &self,
        id: &str,
        purpose: FilePurpose,
        filename: &str,
        bytes: u64,
        rel: &str,
    ) -> Result<FileObject> {
        let created = unix_now();
        self.db().execute(
            "INSERT INTO files (id, purpose, filename, bytes, created_at, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, purpose.as_str(), filename, bytes as i64, created as i64, rel],
        )?;
        Ok(FileObject {
            id: id.to_string(),
            object: "file".into(),
            bytes,
            created_at: created,
            filename: filename.to_string(),
            purpose,
            status: "processed".into(),
        })
    }

    fn file_from_row(r: &rusqlite::Row) -> rusqlite::Result<FileObject> {
        let purpose: String = r.get("purpose")?;
        Ok(FileObject {
            id: r.get("id")?,
            object: "file".into(),
            bytes: r.get::<_, i64>("bytes")? as u64,
            created_at: r.get::<_, i64>("created_at")? as u64,
            filename: r.get("filename")?,
            purpose: FilePurpose::parse(&purpose).unwrap_or(FilePurpose::Batch),
            status: "processed".into(),
        })
    }

    pub fn file(&self, id: &str) -> Result<FileObject> {
        self.db()
            .query_row(
                "SELECT * FROM files WHERE id = ?1",
                [id],
                Self::file_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::NotFound {
                what: "file",
                id: id.to_string(),
            })
    }

    /// Where file `id`'s bytes are.
    pub fn file_path(&self, id: &str) -> Result<PathBuf> {
        let rel: Option<String> = self
            .db()
            .query_row("SELECT path FROM files WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        rel.map(|r| self.dir.join(r))
            .ok_or_else(|| Error::NotFound {
                what: "file",
                id: id.to_string(),
            })
    }

    /// Files, newest first unless `ascending`, after the cursor file `after`; and whether
    /// more follow.
    pub fn files(
        &self,
        purpose: Option<FilePurpose>,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<(Vec<FileObject>, bool)> {
        let db = self.db();
        let cursor: Option<i64> = match after {
            Some(a) => Some(
                db.query_row("SELECT seq FROM files WHERE id = ?1", [a], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| Error::NotFound {
                        what: "file",
                        id: a.to_string(),
                    })?,
            ),
            None => None,
        };
        let (cmp, order) = if ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let sql = format!(
            "SELECT * FROM files WHERE (?1 IS NULL OR purpose = ?1) AND (?2 IS NULL OR seq {cmp} ?2) ORDER BY seq {order} LIMIT ?3"
        );
        let mut stmt = db.prepare(&sql)?;
        let mut rows: Vec<FileObject> = stmt
            .query_map(
                params![purpose.map(|p| p.as_str()), cursor, limit as i64 + 1],
                Self::file_from_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Deletes a file; an input file of a batch still running is refused.
    pub fn delete_file(&self, id: &str) -> Result<FileObject> {
        let f = self.file(id)?;
        let path = self.file_path(id)?;
        let busy = self
            .unfinished()?
            .into_iter()
            .any(|b| b.input_file_id == id);
        if busy {
            return Err(Error::Invalid(format!(
                "file {id} is the input of a batch that has not finished; cancel the batch first"
            )));
        }
        self.db().execute("DELETE FROM files WHERE id = ?1", [id])?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(f)
    }

    /// The batch's output and error files (registered as files when it ends).
    pub fn result_paths(&self, batch_id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("files/{batch_id}-output.jsonl")),
            self.dir.join(format!("files/{batch_id}-errors.jsonl")),
        )
    }

    pub fn create_batch(&self, nb: NewBatch) -> Result<Batch> {
        let now = unix_now();
        let b = Batch {
            id: new_id("batch_"),
            object: "batch".into(),
            endpoint: nb.endpoint,
            errors: None,
            input_file_id: nb.input_file_id,
            completion_window: nb.completion_window,
            status: BatchStatus::Validating,
            output_file_id: None,
            error_file_id: None,
            created_at: now,
            in_progress_at: None,
            expires_at: Some(now + nb.window_secs),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            request_counts: RequestCounts::default(),
            metadata: nb.metadata,
        };
        let json = serde_json::to_string(&b).map_err(|e| Error::Corrupt(e.to_string()))?;
        self.db().execute(
            "INSERT INTO batches (id, created_at, status, json) VALUES (?1, ?2, ?3, ?4)",
            params![b.id, now as i64, status_str(b.status), json],
        )?;
        Ok(b)
    }

    fn batch_from_json(json: String) -> Result<Batch> {
        serde_json::from_str(&json).map_err(|e| Error::Corrupt(e.to_string()))
    }

    pub fn batch(&self, id: &str) -> Result<Batch> {
        let json: Option<String> = self
            .db()
            .query_row("SELECT json FROM batches WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        Self::batch_from_json(json.ok_or_else(|| Error::NotFound {
            what: "batch",
            id: id.to_string(),
        })?)
    }

    /// Batches newest first, after the cursor batch `after`; and whether more follow.
    pub fn batches(&self, after: Option<&str>, limit: usize) -> Result<(Vec<Batch>, bool)> {
        let db = self.db();
        let cursor: Option<i64> = match after {
            Some(a) => Some(
                db.query_row("SELECT seq FROM batches WHERE id = ?1", [a], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| Error::NotFound {
                        what: "batch",
                        id: a.to_string(),
                    })?,
            ),
            None => None,
        };
        let mut stmt = db.prepare(
            "SELECT json FROM batches WHERE (?1 IS NULL OR seq < ?1) ORDER BY seq DESC LIMIT ?2",
        )?;
        let jsons: Vec<String> = stmt
            .query_map(params![cursor, limit as i64 + 1], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let more = jsons.len() > limit;
        let mut out = jsons
            .into_iter()
            .map(Self::batch_from_json)
            .collect::<Result<Vec<_>>>()?;
        out.truncate(limit);
        Ok((out, more))
    }

    /// Batches that have not reached a terminal status, oldest first.
    pub fn unfinished(&self) -> Result<Vec<Batch>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT json FROM batches WHERE status NOT IN ('failed', 'completed', 'expired', 'cancelled') ORDER BY seq ASC",
        )?;
        let jsons: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        jsons.into_iter().map(Self::batch_from_json).collect()
    }

    /// Saves `b` (its status, timestamps, counts, errors).
    pub fn put_batch(&self, b: &Batch) -> Result<()> {
        let json = serde_json::to_string(b).map_err(|e| Error::Corrupt(e.to_string()))?;
        let n = self.db().execute(
            "UPDATE batches SET status = ?2, json = ?3 WHERE id = ?1",
            params![b.id, status_str(b.status), json],
        )?;
        if n == 0 {
            return Err(Error::NotFound {
                what: "batch",
                id: b.id.clone(),
            });
        }
        Ok(())
    }

    /// Asks a batch to stop: `cancelling` now (the runner finishes it), unless it has
    /// already ended.
    pub fn request_cancel(&self, id: &str) -> Result<Batch> {
        let mut b = self.batch(id)?;
        if matches!(
            b.status,
            BatchStatus::Validating | BatchStatus::InProgress | BatchStatus::Finalizing
        ) {
            b.status = BatchStatus::Cancelling;
            b.cancelling_at = Some(unix_now());
            self.put_batch(&b)?;
        }
        Ok(b)
    }

    /// The lines already done (0-based) and the committed lengths of the output and
    /// error files.
    pub fn progress(&self, id: &str) -> Result<(HashSet<u64>, u64, u64)> {
        let db = self.db();
        let (out, err): (i64, i64) = db.query_row(
            "SELECT output_len, error_len FROM batches WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut stmt = db.prepare("SELECT line FROM lines WHERE batch_id = ?1")?;
        let done = stmt
            .query_map([id], |r| r.get::<_, i64>(0))?
            .map(|r| r.map(|v| v as u64))
            .collect::<rusqlite::Result<_>>()?;
        Ok((done, out as u64, err as u64))
    }

    /// Records line `line` as done, with the output and error files' new lengths (the
    /// line is already in one of them, synced) and the batch's new counts, in one
    /// transaction.
    pub fn commit_line(
        &self,
        b: &Batch,
        line: u64,
        ok: bool,
        output_len: u64,
        error_len: u64,
    ) -> Result<()> {
        let json = serde_json::to_string(b).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO lines (batch_id, line, ok) VALUES (?1, ?2, ?3)",
            params![b.id, line as i64, ok as i64],
        )?;
        tx.execute(
            "UPDATE batches SET json = ?2, output_len = ?3, error_len = ?4 WHERE id = ?1",
            params![b.id, json, output_len as i64, error_len as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Registers a finished batch's output or error file under `purpose = batch_output`.
    pub fn register_result(&self, path: &Path, filename: &str) -> Result<FileObject> {
        let bytes = std::fs::metadata(path)?.len();
        let rel = path
            .strip_prefix(&self.dir)
            .map_err(|_| Error::Corrupt(format!("{} is outside the store", path.display())))?
            .to_string_lossy()
            .into_owned();
        self.insert_file(
            &new_id("file-"),
            FilePurpose::BatchOutput,
            filename,
            bytes,
            &rel,
        )
    }

    /// Deletes batches that ended before `cutoff` (unix seconds) with their records, and
    /// files created before it that no unfinished batch reads. Returns (batches, files).
    pub fn sweep(&self, cutoff: u64) -> Result<(usize, usize)> {
        let old: Vec<Batch> = {
            let db = self.db();
            let mut stmt = db.prepare(
                "SELECT json FROM batches WHERE created_at < ?1 AND status IN ('failed', 'completed', 'expired', 'cancelled')",
            )?;
            let jsons: Vec<String> = stmt
                .query_map([cutoff as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            jsons
                .into_iter()
                .map(Self::batch_from_json)
                .collect::<Result<_>>()?
        };
        for b in &old {
            let db = self.db();
            db.execute("DELETE FROM lines WHERE batch_id = ?1", [&b.id])?;
            db.execute("DELETE FROM batches WHERE id = ?1", [&b.id])?;
        }
        let ids: Vec<String> = {
            let db = self.db();
            let mut stmt = db.prepare("SELECT id FROM files WHERE created_at < ?1")?;
            let v = stmt
                .query_map([cutoff as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        let mut files = 0;
        for id in ids {
            match self.delete_file(&id) {
                Ok(_) => files += 1,
                Err(Error::Invalid(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for b in &old {
            let (o, e) = self.result_paths(&b.id);
            for p in [o, e] {
                if p.exists() && !self.registered(&p)? {
                    std::fs::remove_file(p)?;
                }
            }
        }
        Ok((old.len(), files))
    }

    fn registered(&self, path: &Path) -> Result<bool> {
        let rel = path
            .strip_prefix(&self.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(self
            .db()
            .query_row("SELECT 1 FROM files WHERE path = ?1", [rel], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
