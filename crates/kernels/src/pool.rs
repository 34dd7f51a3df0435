//! A persistent thread pool with one parallel region per call: workers spin briefly
//! between regions (a model step issues hundreds of them back to back) and park when
//! idle so that an idle server burns no CPU.
//!
//! Soundness: a region's closure borrows the caller's stack, so `run` must not return
//! (normally or by unwinding) while any worker may still call it. A panicking task is
//! caught where it ran; no further tasks are handed out, every worker is awaited, and
//! the first panic is then re-raised on the caller. The pool stays usable.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    generation: AtomicU64,
    job: Mutex<Option<Job<'static>>>,
    n_tasks: AtomicUsize,
    next: AtomicUsize,
    workers_done: AtomicUsize,
    shutdown: AtomicBool,
    sleepers: Mutex<Vec<Thread>>,
    /// The first panic of the current region, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Nanoseconds every thread of the pool spent running tasks, spinning for the next
    /// region (or for the others to finish one), and parked.
    busy_ns: AtomicU64,
    spin_ns: AtomicU64,
    parked_ns: AtomicU64,
}

/// Where the pool's threads spent their time, summed over the threads, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolTimes {
    pub busy: Duration,
    pub spin: Duration,
    pub parked: Duration,
}

fn add(a: &AtomicU64, d: Duration) {
    a.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    n_threads: usize,
    busy: Mutex<()>,
}

/// How long a worker spins for the next region before parking.
const SPIN: Duration = Duration::from_micros(2000);

impl ThreadPool {
    /// Where the pool's threads spent their time so far (a worker's spin is counted when
    /// it ends, its parked time as it goes).
    pub fn times(&self) -> PoolTimes {
        let d = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        PoolTimes {
            busy: d(&self.shared.busy_ns),
            spin: d(&self.shared.spin_ns),
            parked: d(&self.shared.parked_ns),
        }
    }
}

/// `f(row index, row of a, row of b)`.
pub type RowPairFn<'a> = dyn Fn(usize, &mut [f32], &mut [f32]) + Sync + 'a;

impl ThreadPool {
    /// `n_threads` counts the calling thread, which takes part in every region.
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            n_tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            workers_done: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: Mutex::new(Vec::new()),
            panic: Mutex::new(None),
            busy_ns: AtomicU64::new(0),
            spin_ns: AtomicU64::new(0),
            parked_ns: AtomicU64::new(0),
        });
        let handles = (1..n_threads)
            .map(|i| {
                let s = shared.clone();
                thread::Builder::new()
                    .name(format!("autoglm-worker-{i}"))
                    .spawn(move || worker(s))
                    .expect("spawning a worker thread")
            })
            .collect();
        Self {
            shared,
            handles,
            n_threads,
            busy: Mutex::new(()),
        }
    }

    /// The machine's available parallelism (the binary's settings may override it).
    pub fn default_threads() -> usize {
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    pub fn threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(r, row)` for each `width`-long row of `out`, spread over the pool when there
    /// are enough rows to pay for waking it (row-wise ops of a batch: norms, residuals).
    pub fn for_rows(&self, out: &mut [f32], width: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        self.for_row_pairs(out, width, &mut [], 0, &|r, a, _| f(r, a));
    }

    /// Like `for_rows` over two matrices at once: `f(r, a_row, b_row)` with rows of
    /// `a_width` and `b_width` values (`b` may be empty when `b_width` is 0).
    pub fn for_row_pairs(
        &self,
        a: &mut [f32],
        a_width: usize,
        b: &mut [f32],
        b_width: usize,
        f: &RowPairFn<'_>,
    ) {
        if a_width == 0 {
            return;
        }
        let rows = a.len() / a_width;
        assert!(b.len() >= rows * b_width, "second matrix too short");
        if rows < 16 || self.n_threads == 1 {
            for r in 0..rows {
                let (ra, rb) = (r * a_width, r * b_width);
                f(r, &mut a[ra..ra + a_width], &mut b[rb..rb + b_width]);
            }
            return;
        }
        struct Rows(*mut f32, *mut f32);
        // SAFETY: each task touches only its own rows.
        unsafe impl Sync for Rows {}
        let base = Rows(a.as_mut_ptr(), b.as_mut_ptr());
        let base = &base;
        let per = rows.div_ceil(self.n_threads * 2);
        self.run(rows.div_ceil(per), &|t| {
            for r in t * per..((t + 1) * per).min(rows) {
                // SAFETY: rows are disjoint, inside `a` and `b` (asserted), which outlive
                // `run`.
                let (ra, rb) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(base.0.add(r * a_width), a_width),
                        std::slice::from_raw_parts_mut(base.1.add(r * b_width), b_width),
                    )
                };
                f(r, ra, rb);
            }
        });
    }

    /// Runs `f(0..n_tasks)` across the pool and returns when every task has finished.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.n_threads == 1 || n_tasks == 1 {
            let t = Instant::now();
            (0..n_tasks).for_each(f);
            add(&self.shared.busy_ns, t.elapsed());
            return;
        }
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.shared;
        // SAFETY: the 'static lifetime is a lie told only to store the reference; this
        // function does not return until every worker has reported it is done with this
        // generation, and the slot is cleared before returning.
        let job: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.n_tasks.store(n_tasks, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.workers_done.store(0, Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Release);
        for t in s
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.unpark();
        }
        let t = Instant::now();
        run_tasks(s, f);
        let ran = Instant::now();
        add(&s.busy_ns, ran - t);
        let workers = self.n_threads - 1;
        let mut spins = 0u32;
        while s.workers_done.load(Ordering::Acquire) < workers {
            spins += 1;
            // A descheduled worker (an oversubscribed machine) would make pure spinning
            // burn the whole time slice it needs to finish.
            if spins.is_multiple_of(256) {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        add(&s.spin_ns, ran.elapsed());
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Every worker is done with `f`: only now may a task's panic unwind the caller.
        let panicked = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = panicked {
            resume_unwind(p);
        }
    }
}

fn run_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let n = s.n_tasks.load(Ordering::Relaxed);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            // Hand out no more tasks of this region; keep the first panic.
            s.next.store(n, Ordering::Relaxed);
            let mut slot = s.panic.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(p);
            }
            break;
        }
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut parked = Duration::ZERO;
        let mut spins = 0u32;
        let mut registered = false;
        let gen = loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen || s.shutdown.load(Ordering::Acquire) {
                break g;
            }
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                if !registered {
                    s.sleepers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(thread::current());
                    registered = true;
                }
                // Re-check after registering so a wake-up between the check and the park
                // is not lost (park returns at once if unpark came first).
                if s.generation.load(Ordering::Acquire) == seen
                    && !s.shutdown.load(Ordering::Acquire)
                {
                    let p = Instant::now();
                    thread::park_timeout(Duration::from_millis(100));
                    let e = p.elapsed();
                    parked += e;
                    add(&s.parked_ns, e);
                }
            } else {
                std::hint::spin_loop();
            }
        };
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = gen;
        let woke = Instant::now();
        add(&s.spin_ns, (woke - start).saturating_sub(parked));
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = job {
            run_tasks(&s, f);
        }
        add(&s.busy_ns, woke.elapsed());
        s.workers_done.fetch_add(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for h in &self.handles {
            h.thread().unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once_across_many_regions() {
        let pool = ThreadPool::new(3);
        for round in 0..200 {
            let n = 1 + round % 17;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
    }

    fn panic_text(p: Box<dyn Any + Send>) -> String {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_after_every_other_task_has_stopped() {
        let pool = ThreadPool::new(3);
        for round in 0..20 {
            let started = AtomicUsize::new(0);
            let finished = AtomicUsize::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool.run(12, &|i| {
                    started.fetch_add(1, Ordering::SeqCst);
                    if i == round % 12 {
                        panic!("task {i} fails");
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    finished.fetch_add(1, Ordering::SeqCst);
                })
            }));
            let msg = panic_text(r.expect_err("the panic reaches the caller"));
            assert_eq!(msg, format!("task {} fails", round % 12));
            // Nothing still runs the closure: every started task but the panicking one
            // has finished, and none starts later.
            let (s, f) = (
                started.load(Ordering::SeqCst),
                finished.load(Ordering::SeqCst),
            );
            assert_eq!(f, s - 1, "round {round}");
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(started.load(Ordering::SeqCst), s);
        }
    }

    #[test]
    fn the_pool_works_after_panics_on_every_thread() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|_| panic!("everyone fails"));
        }));
        assert_eq!(panic_text(r.unwrap_err()), "everyone fails");
        let sum = AtomicUsize::new(0);
        pool.run(100, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 4950);
    }

    #[test]
    fn row_helpers_cover_tails_and_empty_inputs() {
        let pool = ThreadPool::new(2);
        for rows in [0usize, 1, 15, 16, 17, 33, 100] {
            let mut a = vec![0f32; rows * 3];
            let mut b = vec![0f32; rows * 2];
            pool.for_row_pairs(&mut a, 3, &mut b, 2, &|r, ra, rb| {
                assert_eq!((ra.len(), rb.len()), (3, 2));
                ra.fill(r as f32);
                rb.fill(-(r as f32));
            });
            for r in 0..rows {
                assert_eq!(&a[r * 3..r * 3 + 3], &[r as f32; 3]);
                assert_eq!(&b[r * 2..r * 2 + 2], &[-(r as f32); 2]);
            }
            pool.for_rows(&mut a, 3, &|r, row| row[0] = r as f32 + 0.5);
            assert!((0..rows).all(|r| a[r * 3] == r as f32 + 0.5));
        }
        // Zero-width rows: nothing to visit.
        pool.for_rows(&mut [1.0, 2.0], 0, &|_, _| panic!("no rows"));
        pool.run(0, &|_| panic!("no tasks"));
    }

    #[test]
    fn regions_after_parking_still_complete() {
        let pool = ThreadPool::new(2);
        std::thread::sleep(Duration::from_millis(20));
        let sum = AtomicUsize::new(0);
        pool.run(8, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 28);
    }
}
