//! The last minutes of the essentials, sampled once a second from the server's own
//! Prometheus registry (one source of truth with /metrics), and the last error responses.

use engine::metrics_names as m;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Five minutes at one point a second.
const POINTS: usize = 300;
const ERRORS: usize = 50;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: f64,
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    pub running: f64,
    pub waiting: f64,
    pub kv_usage: f64,
    /// Percentiles over the second's observations; `None` when there were none.
    pub ttft_p50: Option<f64>,
    pub ttft_p99: Option<f64>,
    pub itl_p50: Option<f64>,
    pub itl_p99: Option<f64>,
    pub prefix_cache_hit_rate: Option<f64>,
    pub response_cache_hit_rate: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorRow {
    pub t: f64,
    pub status: u16,
    pub path: String,
    pub request_id: String,
}

/// Sums per series name, and histogram buckets summed per `le`, of one scrape.
#[derive(Default)]
struct Scrape {
    values: HashMap<String, f64>,
    buckets: HashMap<String, Vec<(f64, f64)>>,
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let name = &series[..series.find('{').unwrap_or(series.len())];
        if let Some(base) = name.strip_suffix("_bucket") {
            let le = series
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|x| {
                    if x == "+Inf" {
                        Some(f64::INFINITY)
                    } else {
                        x.parse().ok()
                    }
                });
            if let Some(le) = le {
                let b = s.buckets.entry(base.to_string()).or_default();
                match b.iter_mut().find(|(e, _)| *e == le) {
                    Some((_, c)) => *c += v,
                    None => b.push((le, v)),
                }
            }
        } else {
            *s.values.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    for b in s.buckets.values_mut() {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    s
}

/// Prometheus's `histogram_quantile` over the bucket increases between two scrapes.
fn quantile(
    q: f64,
    before: Option<&Vec<(f64, f64)>>,
    after: Option<&Vec<(f64, f64)>>,
) -> Option<f64> {
    let after = after?;
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let old = before
                .and_then(|b| b.iter().find(|(e, _)| e == le))
                .map_or(0.0, |(_, c)| *c);
            (*le, (c - old).max(0.0))
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = (count - prev.1).max(f64::MIN_POSITIVE);
            return Some(prev.0 + (le - prev.0) * (rank - prev.1) / within);
        }
        prev = (le, count);
    }
    None
}

#[derive(Default)]
pub struct Recent {
    points: Mutex<VecDeque<Point>>,
    errors: Mutex<VecDeque<ErrorRow>>,
    last: Mutex<Option<(f64, Scrape)>>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Recent {
    /// Adds a point from the registry's text, as rates since the previous call.
    pub fn sample(&self, text: &str) {
        let t = now();
        let cur = parse(text);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t0, prev)) = last.as_ref() {
            let dt = (t - t0).max(1e-3);
            let inc = |name: &str| {
                (cur.values.get(name).copied().unwrap_or(0.0)
                    - prev.values.get(name).copied().unwrap_or(0.0))
                .max(0.0)
            };
            let gauge = |name: &str| cur.values.get(name).copied().unwrap_or(0.0);
            let ratio = |hit: f64, all: f64| (all > 0.0).then(|| hit / all);
            let errors = self.errors_since(*t0);
            let q = |p: f64, name: &str| quantile(p, prev.buckets.get(name), cur.buckets.get(name));
            let point = Point {
                t,
                requests_per_s: inc(crate::listener::HTTP_REQUESTS) / dt,
                errors_per_s: errors as f64 / dt,
                prompt_tokens_per_s: inc(m::PROMPT_TOKENS) / dt,
                generation_tokens_per_s: inc(m::GENERATION_TOKENS) / dt,
                running: gauge(m::REQUESTS_RUNNING),
                waiting: gauge(m::REQUESTS_WAITING),
                kv_usage: gauge(m::KV_USAGE),
                ttft_p50: q(0.5, m::TTFT),
                ttft_p99: q(0.99, m::TTFT),
                itl_p50: q(0.5, m::ITL),
                itl_p99: q(0.99, m::ITL),
                prefix_cache_hit_rate: ratio(inc(m::PREFIX_HITS), inc(m::PREFIX_QUERIES)),
                response_cache_hit_rate: ratio(
                    inc(cache::metrics_names::HITS),
                    inc(cache::metrics_names::LOOKUPS),
                ),
            };
            let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
            if points.len() == POINTS {
                points.pop_front();
            }
            points.push_back(point);
        }
        *last = Some((t, cur));
    }

    pub fn error(&self, status: u16, path: &str, request_id: &str) {
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() == ERRORS {
            e.pop_front();
        }
        e.push_back(ErrorRow {
            t: now(),
            status,
            path: path.chars().take(100).collect(),
            request_id: request_id.to_string(),
        });
    }

    fn errors_since(&self, t: f64) -> usize {
        let e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().rev().take_while(|r| r.t > t).count()
    }

    pub fn snapshot(&self) -> (Vec<Point>, Vec<ErrorRow>) {
        let p = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        (
            p.iter().cloned().collect(),
            e.iter().rev().cloned().collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_prometheus() {
        let before = vec![(0.1, 0.0), (1.0, 0.0), (f64::INFINITY, 0.0)];
        let after = vec![(0.1, 50.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        let p50 = quantile(0.5, Some(&before), Some(&after)).unwrap();
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        let p75 = quantile(0.75, Some(&before), Some(&after)).unwrap();
        assert!((p75 - 0.55).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(0.5, Some(&after), Some(&after)), None);
    }

    #[test]
    fn a_scrape_sums_series_and_buckets_over_labels() {
        let s = parse("# HELP x y\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nh_bucket{m=\"a\",le=\"0.5\"} 1\nh_bucket{m=\"b\",le=\"0.5\"} 2\nh_bucket{m=\"a\",le=\"+Inf\"} 4\n");
        assert_eq!(s.values["x_total"], 5.0);
        assert_eq!(s.buckets["h"], vec![(0.5, 3.0), (f64::INFINITY, 4.0)]);
    }
}
