//! Driving the load: warm-up, then each step closed- or open-loop, with the server's
//! counters scraped around it.

use crate::client::{RequestOutcome, Target};
use crate::config::{BenchConfig, LoadShape, WorkloadKind};
use crate::report::{BenchResults, StepReport};
use crate::rng::Rng;
use crate::workload::{RequestSpec, Workload};
use crate::{prom, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Shared {
    target: Target,
    workload: Mutex<Workload>,
    cfg: BenchConfig,
}

pub async fn run(cfg: &BenchConfig) -> Result<BenchResults> {
    cfg.validate()?;
    let target = Target::new(cfg)?;
    let workload = Workload::new(
        cfg.workload.clone(),
        cfg.seed,
        cfg.input_len,
        cfg.output_len,
    )?;
    let shared = Arc::new(Shared {
        target,
        workload: Mutex::new(workload),
        cfg: cfg.clone(),
    });
    let mut steps = Vec::new();
    for shape in &cfg.steps {
        if cfg.warmup > 0 {
            let c = match *shape {
                LoadShape::Closed { concurrency } => concurrency,
                LoadShape::Open { .. } => 4,
            };
            closed_loop(&shared, c, Some(cfg.warmup), None, None).await;
        }
        let before = shared.target.metrics_text().await.map(|t| prom::parse(&t));
        let bar = progress(cfg, shape);
        let start = Instant::now();
        let outcomes = match *shape {
            LoadShape::Closed { concurrency } => {
                closed_loop(
                    &shared,
                    concurrency,
                    cfg.requests,
                    cfg.duration,
                    bar.as_ref(),
                )
                .await
            }
            LoadShape::Open { rate, burstiness } => {
                open_loop(&shared, rate, burstiness, bar.as_ref()).await
            }
        };
        let elapsed = start.elapsed().as_secs_f64();
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let after = shared.target.metrics_text().await.map(|t| prom::parse(&t));
        let server = match (before, after) {
            (Some(b), Some(a)) => Some(prom::deltas(&b, &a)),
            _ => None,
        };
        steps.push(StepReport::new(
            *shape, &outcomes, elapsed, &cfg.slo, server,
        ));
    }
    Ok(BenchResults::new(cfg, steps))
}

fn progress(cfg: &BenchConfig, shape: &LoadShape) -> Option<ProgressBar> {
    if !cfg.progress {
        return None;
    }
    let b = match (cfg.requests, cfg.duration) {
        (Some(n), _) => ProgressBar::new(n as u64),
        (None, Some(d)) => ProgressBar::new(d.as_secs().max(1)),
        (None, None) => ProgressBar::new_spinner(),
    };
    b.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_prefix(shape.label());
    Some(b)
}

fn tick(bar: Option<&ProgressBar>, start: Instant, by_time: bool) {
    if let Some(b) = bar {
        if by_time {
            b.set_position(start.elapsed().as_secs());
        } else {
            b.inc(1);
        }
    }
}

async fn closed_loop(
    s: &Arc<Shared>,
    concurrency: usize,
    requests: Option<usize>,
    duration: Option<Duration>,
    bar: Option<&ProgressBar>,
) -> Vec<RequestOutcome> {
    let issued = Arc::new(AtomicUsize::new(0));
    let deadline = duration.map(|d| Instant::now() + d);
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let by_time = requests.is_none();
    let take = {
        let issued = issued.clone();
        move || -> bool {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            match requests {
                Some(n) => issued.fetch_add(1, Ordering::Relaxed) < n,
                None => true,
            }
        }
    };
    let workers = (0..concurrency).map(|_| {
        let (s, results, take) = (s.clone(), results.clone(), take.clone());
        let bar = bar.cloned();
        async move {
            if let WorkloadKind::Agent { turns } = s.cfg.workload {
                'sessions: loop {
                    let (system, asks) = s
                        .workload
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .session(s.cfg.input_len.max(1));
                    let mut conv = vec![("system".to_string(), system)];
                    for ask in asks.into_iter().take(turns.max(1)) {
                        if !take() {
                            break 'sessions;
                        }
                        conv.push(("user".into(), ask));
                        let spec = RequestSpec {
                            messages: conv.clone(),
                            max_tokens: s.cfg.output_len,
                        };
                        let out = s.target.send(&spec, Instant::now()).await;
                        conv.push(("assistant".into(), out.text.clone()));
                        results.lock().unwrap_or_else(|e| e.into_inner()).push(out);
                        tick(bar.as_ref(), start, by_time);
                    }
                }
            } else {
                while take() {
                    let spec = s.workload.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let out = s.target.send(&spec, Instant::now()).await;
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(out);
                    tick(bar.as_ref(), start, by_time);
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::take(&mut *r)
}

async fn open_loop(
    s: &Arc<Shared>,
    rate: f64,
    burstiness: f64,
    bar: Option<&ProgressBar>,
) -> Vec<RequestOutcome> {
    let cfg = &s.cfg;
    let mut rng = Rng::new(cfg.seed ^ 0xA11);
    let scale = 1.0 / (rate * burstiness);
    let start = Instant::now();
    let limit = cfg
        .max_inflight
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
    let mut tasks = tokio::task::JoinSet::new();
    let mut t = 0.0;
    let mut i = 0usize;
    loop {
        if cfg.requests.is_some_and(|n| i >= n)
            || cfg.duration.is_some_and(|d| t >= d.as_secs_f64())
        {
            break;
        }
        let due = start + Duration::from_secs_f64(t);
        let spec = s.workload.lock().unwrap_or_else(|e| e.into_inner()).next();
        let (s2, limit) = (s.clone(), limit.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            let _permit = match &limit {
                Some(l) => l.clone().acquire_owned().await.ok(),
                None => None,
            };
            // Timed from when it was due, not from when a slot freed up: no
            // coordinated omission.
            s2.target.send(&spec, due).await
        });
        t += rng.gamma(burstiness) * scale;
        i += 1;
    }
    let mut out = Vec::with_capacity(i);
    while let Some(r) = tasks.join_next().await {
        if let Ok(o) = r {
            out.push(o);
        }
        tick(bar, start, cfg.requests.is_none());
    }
    out
}
