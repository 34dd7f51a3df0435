//! The in-process L1: moka, bounded in bytes (entries weighed by their size), with
//! TinyLFU admission or plain LRU, and each entry expiring TTL after it was generated
//! (not after it was promoted from L2: a promoted entry keeps its age).

use crate::entry::Entry;
use crate::metrics_names as m;
use crate::{BoxFut, Key, Level, Tier};
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Eviction policy of the L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// moka's TinyLFU: a new entry is admitted only if it is used more often than the
    /// one it would evict, so a scan of one-off requests cannot flush the popular ones.
    TinyLfu,
    Lru,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tinylfu" | "tiny-lfu" => Ok(Self::TinyLfu),
            "lru" => Ok(Self::Lru),
            _ => Err(format!("{s:?}: tinylfu or lru")),
        }
    }
}

struct ExpireFromCreation {
    ttl: Duration,
}

impl ExpireFromCreation {
    fn left(&self, e: &Entry) -> Duration {
        self.ttl
            .saturating_sub(Duration::from_millis(e.age_ms()))
            .max(Duration::from_millis(1))
    }
}

impl moka::Expiry<Key, Arc<Entry>> for ExpireFromCreation {
    fn expire_after_create(&self, _: &Key, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(self.left(v))
    }
    fn expire_after_update(
        &self,
        _: &Key,
        v: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.left(v))
    }
}

pub struct MemoryTier {
    cache: moka::sync::Cache<Key, Arc<Entry>>,
}

impl MemoryTier {
    pub fn new(max_bytes: u64, policy: Policy, ttl: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, e: &Arc<Entry>| {
                (e.weight() + std::mem::size_of::<Key>()).min(u32::MAX as usize) as u32
            })
            .eviction_policy(match policy {
                Policy::TinyLfu => EvictionPolicy::tiny_lfu(),
                Policy::Lru => EvictionPolicy::lru(),
            })
            .expire_after(ExpireFromCreation { ttl })
            .eviction_listener(|_, _, cause| {
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    // Replaced or invalidated: not an eviction.
                    _ => return,
                };
                metrics::counter!(m::EVICTIONS, "cause" => cause).increment(1);
            })
            .build();
        Self { cache }
    }

    pub fn get_now(&self, key: &Key) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    pub fn insert_now(&self, key: Key, e: Arc<Entry>) {
        self.cache.insert(key, e);
    }

    /// Brings the byte and entry gauges up to date (moka applies writes lazily).
    pub fn refresh_gauges(&self) {
        self.cache.run_pending_tasks();
        metrics::gauge!(m::L1_BYTES).set(self.cache.weighted_size() as f64);
        metrics::gauge!(m::L1_ENTRIES).set(self.cache.entry_count() as f64);
    }

    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

impl Tier for MemoryTier {
    fn level(&self) -> Level {
        Level::L1
    }
    fn get<'a>(&'a self, key: &'a Key) -> BoxFut<'a, Option<Arc<Entry>>> {
        let v = self.get_now(key);
        Box::pin(std::future::ready(v))
    }
    fn put<'a>(&'a self, key: &'a Key, e: &'a Arc<Entry>) -> BoxFut<'a, bool> {
        self.insert_now(*key, e.clone());
        Box::pin(std::future::ready(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Event;

    fn entry(text_len: usize) -> Arc<Entry> {
        Arc::new(Entry::new(vec![
            Event::Text {
                choice: 0,
                text: "x".repeat(text_len),
                tokens: Vec::new(),
            },
            Event::Finish {
                choice: 0,
                reason: api::FinishReason::Stop,
                prompt_tokens: 1,
                completion_tokens: 1,
            },
        ]))
    }

    #[test]
    fn stays_within_its_byte_bound() {
        let t = MemoryTier::new(64 << 10, Policy::Lru, Duration::from_secs(60));
        for i in 0..200u8 {
            t.insert_now(Key([i; 32]), entry(1000));
        }
        assert!(t.weighted_size() <= 64 << 10, "{}", t.weighted_size());
        assert!(t.weighted_size() > 32 << 10, "{}", t.weighted_size());
    }

    #[test]
    fn entries_expire_ttl_after_generation_even_when_inserted_later() {
        let t = MemoryTier::new(1 << 20, Policy::TinyLfu, Duration::from_millis(300));
        let mut old = (*entry(10)).clone();
        old.created_ms -= 250;
        t.insert_now(Key([1; 32]), Arc::new(old));
        t.insert_now(Key([2; 32]), entry(10));
        std::thread::sleep(Duration::from_millis(120));
        assert!(t.get_now(&Key([1; 32])).is_none());
        assert!(t.get_now(&Key([2; 32])).is_some());
    }
}
