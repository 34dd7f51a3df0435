//! What to retry, how long to wait, and how much retrying a client may do at all.
//!
//! | outcome | retried? |
//! |---|---|
//! | connection refused / reset, or a timeout before any response byte | yes |
//! | 408, 409, 429, 500, 502, 503, 504 | yes, after `Retry-After` (seconds or an HTTP date) or `retry-after-ms` when given, capped at `max_server_wait` |
//! | any other 4xx (400, 401, 403, 404, 413, 415, 422, ...) | never |
//! | a response header `x-should-retry: true` / `false` | overrides the rows above |
//! | a stream that broke after its first byte | never: the caller gets the error and what arrived |
//! | the total deadline | never (it is the caller's limit) |
//!
//! Backoff is exponential with full jitter: attempt `k` (0-based) waits
//! `random(0, min(cap, base · 2^k))`, unless the server said how long. A client-wide
//! budget (a token bucket) lets retries add at most `budget_ratio` to the request rate,
//! so a struggling server is not buried under a retry storm.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1: no retries).
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The longest server-asked wait honoured (`Retry-After`); longer is not retried.
    pub max_server_wait: Duration,
    /// Retries may add at most this fraction of the requests sent (0.1: 10%).
    pub budget_ratio: f64,
    /// Retries allowed before the budget has earned any (a burst allowance).
    pub budget_min: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
            max_server_wait: Duration::from_secs(60),
            budget_ratio: 0.1,
            budget_min: 10.0,
        }
    }
}

impl RetryPolicy {
    /// No retries at all (what a benchmark wants: it measures the server).
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The jittered wait before retry number `attempt` (0 = the first retry), from a
    /// uniform sample `u` in [0, 1).
    pub fn backoff(&self, attempt: u32, u: f64) -> Duration {
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        exp.mul_f64(u.clamp(0.0, 1.0))
    }
}

/// What a failed attempt tells the retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Never,
    /// Retry after the backoff, or after the server's wait when it gave one.
    Retry {
        server_wait: Option<Duration>,
    },
}

/// The decision table for an HTTP status; `should_retry` is the `x-should-retry` header.
pub fn for_status(
    status: u16,
    should_retry: Option<bool>,
    server_wait: Option<Duration>,
) -> Verdict {
    let by_table = matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504);
    if should_retry.unwrap_or(by_table) {
        Verdict::Retry { server_wait }
    } else {
        Verdict::Never
    }
}

/// `Retry-After` (delta-seconds or an HTTP date) or `retry-after-ms`.
pub fn server_wait(retry_after: Option<&str>, retry_after_ms: Option<&str>) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1e3));
        }
    }
    let v = retry_after?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let when = humantime::parse_rfc3339_weak(v)
        .ok()
        .or_else(|| parse_http_date(v))?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form `Retry-After` dates take.
fn parse_http_date(v: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == mon)?
        + 1;
    let iso = format!("{year}-{month:02}-{:02}T{time}Z", day.parse::<u32>().ok()?);
    humantime::parse_rfc3339(&iso).ok()
}

/// A token bucket shared by every call of a client: each request earns `ratio` of a
/// retry, each retry spends one, and the balance is capped, so over any stretch retries
/// are at most `min + ratio × requests`.
pub struct RetryBudget {
    ratio: f64,
    max: f64,
    balance: Mutex<f64>,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            ratio: policy.budget_ratio,
            max: policy.budget_min.max(1.0),
            balance: Mutex::new(policy.budget_min),
        }
    }

    pub fn on_request(&self) {
        let mut b = self.balance.lock().unwrap_or_else(|e| e.into_inner());
        *b = (*b + self.ratio).min(self.max);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_spend(&self) -> bool {
        let mut b = self.balance.lock().unwrap_or_else(|e| e.into_inner());
        if *b >= 1.0 {
            *b -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_table() {
        for s in [408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(
                for_status(s, None, None),
                Verdict::Retry { server_wait: None },
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 405, 413, 415, 422, 501] {
            assert_eq!(for_status(s, None, None), Verdict::Never, "{s}");
        }
        assert_eq!(for_status(503, Some(false), None), Verdict::Never);
        assert_eq!(
            for_status(400, Some(true), None),
            Verdict::Retry { server_wait: None }
        );
    }

    #[test]
    fn retry_after_in_every_form() {
        assert_eq!(server_wait(Some("3"), None), Some(Duration::from_secs(3)));
        assert_eq!(
            server_wait(Some("3"), Some("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            server_wait(None, Some("1.5")),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            server_wait(Some("Sun, 06 Nov 1994 08:49:37 GMT"), None),
            Some(Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let date = humantime::format_rfc3339_seconds(later).to_string();
        let w = server_wait(Some(&date), None).unwrap();
        assert!(
            w > Duration::from_secs(115) && w <= Duration::from_secs(120),
            "{w:?}"
        );
        assert_eq!(server_wait(Some("soon"), None), None);
        assert_eq!(server_wait(None, None), None);
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(0, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(0, 0.5), Duration::from_millis(50));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 0.999_999).as_millis(), 799);
        assert_eq!(p.backoff(10, 0.5), Duration::from_millis(500));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn the_budget_allows_min_plus_ratio_of_requests() {
        let p = RetryPolicy {
            budget_ratio: 0.1,
            budget_min: 2.0,
            ..RetryPolicy::default()
        };
        let b = RetryBudget::new(&p);
        let mut granted = 0;
        for _ in 0..100 {
            b.on_request();
            while b.try_spend() {
                granted += 1;
            }
        }
        assert!((11..=12).contains(&granted), "{granted}");
    }
}
