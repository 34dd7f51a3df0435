//! The response cache: a response that was generated before is answered again without
//! running the model, from the in-process L1 first and a shared Redis L2 second.
//! Entries are responses as events ([`entry`]), so a hit replays exactly like a live
//! answer; identical requests in flight share one generation ([`flight`]).
//!
//! What is cacheable, the key material and the HTTP controls are the server's business;
//! this crate stores, finds, expires and coalesces.

pub mod entry;
mod flight;
mod key;
mod memory;
pub mod metrics_names;
mod redis_tier;

pub use entry::{Entry, Event, TokenRecord};
pub use flight::{Flights, Joined, Producer, Reader};
pub use key::Key;
pub use memory::{MemoryTier, Policy};
pub use redis_tier::RedisTier;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cache entry: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    L1,
    L2,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
        }
    }
}

/// One level of the cache. A failure inside a tier (Redis down, a corrupt value) is a
/// miss or a store that did not happen, never an error.
pub trait Tier: Send + Sync {
    fn level(&self) -> Level;
    fn get<'a>(&'a self, key: &'a Key) -> BoxFut<'a, Option<Arc<Entry>>>;
    /// Whether the entry was stored.
    fn put<'a>(&'a self, key: &'a Key, e: &'a Arc<Entry>) -> BoxFut<'a, bool>;
}

/// Which store a request's entry lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// The response cache proper: L1 (TinyLFU or LRU) and L2.
    Shared,
    /// Answers to sampled requests kept only for retries of the same `Idempotency-Key`:
    /// an LRU of their own (TinyLFU would refuse one-off entries when the L1 is full),
    /// in this process only.
    Idempotent,
}

/// When a new entry reaches the L2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// The answer goes out first; the L2 store happens on its own task.
    Aside,
    /// The entry is in L1 and L2 before the answer's last byte is sent.
    Through,
}

impl std::str::FromStr for WriteMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "aside" => Ok(Self::Aside),
            "through" => Ok(Self::Through),
            _ => Err(format!("{s:?}: aside or through")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// 0 disables the L1.
    pub l1_bytes: u64,
    pub policy: Policy,
    pub ttl: Duration,
    pub redis_url: Option<String>,
    pub redis_timeout: Duration,
    pub write: WriteMode,
    /// Bytes kept for idempotent retries (0: none).
    pub idempotency_bytes: u64,
    pub idempotency_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_bytes: 256 << 20,
            policy: Policy::TinyLfu,
            ttl: Duration::from_secs(3600),
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            write: WriteMode::Aside,
            idempotency_bytes: 32 << 20,
            idempotency_ttl: Duration::from_secs(600),
        }
    }
}

/// L1 and L2 together.
pub struct ResponseCache {
    pub config: CacheConfig,
    l1: Option<Arc<MemoryTier>>,
    l2: Option<Arc<RedisTier>>,
    recent: Option<Arc<MemoryTier>>,
}

impl ResponseCache {
    /// Must be called inside a Tokio runtime when an L2 is configured.
    pub fn new(config: CacheConfig) -> Result<Self> {
        let l1 = (config.l1_bytes > 0)
            .then(|| Arc::new(MemoryTier::new(config.l1_bytes, config.policy, config.ttl)));
        let l2 = match &config.redis_url {
            Some(url) => Some(Arc::new(RedisTier::new(
                url,
                config.redis_timeout,
                config.ttl,
            )?)),
            None => None,
        };
        let recent = (config.idempotency_bytes > 0).then(|| {
            Arc::new(MemoryTier::new(
                config.idempotency_bytes,
                Policy::Lru,
                config.idempotency_ttl,
            ))
        });
        metrics_names::describe(l2.is_some());
        Ok(Self {
            config,
            l1,
            l2,
            recent,
        })
    }

    fn tiers(&self) -> impl Iterator<Item = Arc<dyn Tier>> + '_ {
        let l1 = self.l1.clone().map(|t| t as Arc<dyn Tier>);
        let l2 = self.l2.clone().map(|t| t as Arc<dyn Tier>);
        l1.into_iter().chain(l2)
    }

    /// The in-process entry of `lane`, if fresh enough (`max_age`: the client's
    /// `Cache-Control: max-age`).
    pub fn get_l1(&self, key: &Key, max_age: Option<Duration>, lane: Lane) -> Option<Arc<Entry>> {
        let t = Instant::now();
        let tier = match lane {
            Lane::Shared => self.l1.as_ref()?,
            Lane::Idempotent => self.recent.as_ref()?,
        };
        let e = tier.get_now(key).filter(|e| fresh(e, max_age))?;
        hit(Level::L1, t);
        Some(e)
    }

    /// The L2's entry, if fresh enough; promoted into the L1.
    pub async fn get_l2(&self, key: &Key, max_age: Option<Duration>) -> Option<Arc<Entry>> {
        let t = Instant::now();
        let e = self
            .l2
            .as_ref()?
            .get(key)
            .await
            .filter(|e| fresh(e, max_age))?;
        if e.age_ms() >= self.config.ttl.as_millis() as u64 {
            return None;
        }
        hit(Level::L2, t);
        if let Some(l1) = &self.l1 {
            l1.insert_now(*key, e.clone());
        }
        Some(e)
    }

    /// Stores a new entry: into the L1 now, into the L2 now (`Through`) or on its own
    /// task (`Aside`).
    pub async fn store(&self, key: Key, e: Arc<Entry>, lane: Lane) {
        if lane == Lane::Idempotent {
            if let Some(r) = &self.recent {
                r.insert_now(key, e);
            }
            return;
        }
        for tier in self.tiers() {
            let level = tier.level();
            if level == Level::L2 && self.config.write == WriteMode::Aside {
                let e = e.clone();
                tokio::spawn(async move {
                    if tier.put(&key, &e).await {
                        metrics::counter!(metrics_names::STORES, "level" => "l2").increment(1);
                    }
                });
                continue;
            }
            if tier.put(&key, &e).await {
                metrics::counter!(metrics_names::STORES, "level" => level.label()).increment(1);
            }
        }
    }

    pub fn has_l2(&self) -> bool {
        self.l2.is_some()
    }

    pub fn l2_healthy(&self) -> Option<bool> {
        self.l2.as_ref().map(|t| t.is_healthy())
    }

    pub fn refresh_gauges(&self) {
        if let Some(l1) = &self.l1 {
            l1.refresh_gauges();
        }
    }
}

fn fresh(e: &Entry, max_age: Option<Duration>) -> bool {
    max_age.is_none_or(|a| e.age_ms() <= a.as_millis() as u64)
}

fn hit(level: Level, since: Instant) {
    metrics::counter!(metrics_names::HITS, "level" => level.label()).increment(1);
    metrics::histogram!(metrics_names::HIT_SECONDS, "level" => level.label())
        .record(since.elapsed().as_secs_f64());
}
