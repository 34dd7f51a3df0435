//! The shared L2: Redis through the `redis` crate's `ConnectionManager` (one multiplexed
//! connection that reconnects by itself). Redis trouble is never an error to a client:
//! every call has a short timeout, a failure is a miss (or a skipped store), an outage is
//! logged once when it starts and once when it ends, and while Redis is down only one
//! probe per `PROBE_EVERY` goes out, so requests do not each wait out the timeout.

use crate::entry::Entry;
use crate::metrics_names as m;
use crate::{BoxFut, Error, Key, Level, Result, Tier};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Redis keys: `autoglm:rc:<format version>:<sha-256 hex>`.
const PREFIX: &str = "autoglm:rc";

pub struct RedisTier {
    conn: ConnectionManager,
    timeout: Duration,
    ttl: Duration,
    healthy: AtomicBool,
    /// Milliseconds since `epoch` of the last call made while unhealthy.
    last_probe_ms: AtomicU64,
    epoch: Instant,
}

impl RedisTier {
    /// Does not connect: the first call does, so a server starts while Redis is down.
    /// Must be called inside a Tokio runtime.
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("--cache-redis {url}: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| Error::Config(format!("--cache-redis {url}: {e}")))?;
        Ok(Self {
            conn,
            timeout,
            ttl,
            healthy: AtomicBool::new(true),
            last_probe_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn redis_key(key: &Key) -> String {
        format!("{PREFIX}:{}:{}", crate::entry::FORMAT_VERSION, key.hex())
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether to call Redis now: always while healthy, once per `PROBE_EVERY` otherwise.
    fn may_call(&self) -> bool {
        if self.is_healthy() {
            return true;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_probe_ms.load(Ordering::Acquire);
        now.saturating_sub(last) >= PROBE_EVERY.as_millis() as u64
            && self
                .last_probe_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("the Redis L2 answers again");
            metrics::gauge!(m::L2_HEALTHY).set(1.0);
        }
    }

    fn failed(&self, op: &'static str, kind: &'static str, detail: &str) {
        metrics::counter!(m::L2_ERRORS, "op" => op, "kind" => kind).increment(1);
        self.last_probe_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                op,
                kind,
                error = detail,
                "the Redis L2 is unavailable; answering from L1 and the model until it returns"
            );
            metrics::gauge!(m::L2_HEALTHY).set(0.0);
        }
    }

    async fn call<T: redis::FromRedisValue>(&self, op: &'static str, cmd: redis::Cmd) -> Option<T> {
        if !self.may_call() {
            return None;
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, "error", &e.to_string());
                None
            }
            Err(_) => {
                self.failed(op, "timeout", "no answer within --cache-redis-timeout-ms");
                None
            }
        }
    }

    pub async fn get_entry(&self, key: &Key) -> Option<Arc<Entry>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(Self::redis_key(key));
        let raw: Option<Vec<u8>> = self.call("get", cmd).await?;
        match Entry::decode(&raw?) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                metrics::counter!(m::L2_CORRUPT).increment(1);
                tracing::warn!(key = %Self::redis_key(key), error = %e, "ignoring an invalid value in the Redis L2 (a miss)");
                None
            }
        }
    }

    /// Stores with the entry's remaining TTL; false when Redis did not take it.
    pub async fn put_entry(&self, key: &Key, e: &Entry) -> bool {
        let left = self.ttl.saturating_sub(Duration::from_millis(e.age_ms()));
        if left.is_zero() {
            return false;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(Self::redis_key(key))
            .arg(e.encode())
            .arg("PX")
            .arg(left.as_millis().max(1) as u64);
        self.call::<()>("set", cmd).await.is_some()
    }
}

impl Tier for RedisTier {
    fn level(&self) -> Level {
        Level::L2
    }
    fn get<'a>(&'a self, key: &'a Key) -> BoxFut<'a, Option<Arc<Entry>>> {
        Box::pin(self.get_entry(key))
    }
    fn put<'a>(&'a self, key: &'a Key, e: &'a Arc<Entry>) -> BoxFut<'a, bool> {
        Box::pin(self.put_entry(key, e))
    }
}
