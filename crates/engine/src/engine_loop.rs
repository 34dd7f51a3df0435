//! The engine thread: takes in requests, asks the scheduler for a plan, runs it on the
//! executor, hands the result back. A panic anywhere in that loop is caught: every
//! caller is told the engine failed, and so is every later submission.

use crate::executor::Executor;
use crate::handle::SharedStats;
use crate::metrics_names as m;
use crate::request::{Event, GenerationRequest};
use crate::scheduler::Scheduler;
use crate::tuner::Tuner;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

const BURST_QUIET: Duration = Duration::from_millis(2);
const BURST_MAX: Duration = Duration::from_millis(10);

pub(crate) enum Command {
    Submit {
        id: u64,
        req: Box<GenerationRequest>,
        tx: UnboundedSender<Event>,
        arrival: Instant,
    },
}

pub(crate) struct EngineLoop<E: Executor> {
    sched: Scheduler,
    exec: E,
    rx: mpsc::Receiver<Command>,
    stats: Arc<SharedStats>,
    tuner: Option<Tuner>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl<E: Executor> EngineLoop<E> {
    pub fn new(
        sched: Scheduler,
        exec: E,
        rx: mpsc::Receiver<Command>,
        stats: Arc<SharedStats>,
        tuner: Option<Tuner>,
    ) -> Self {
        m::describe();
        metrics::gauge!(m::KV_BLOCKS).set(sched.pool().total() as f64);
        metrics::gauge!(m::ENGINE_FAILED).set(0.0);
        let mut sched = sched;
        if let Some(t) = &tuner {
            sched.set_limits(t.budget(), t.max_seqs());
            metrics::gauge!(m::TUNER_BUDGET).set(t.budget() as f64);
            metrics::gauge!(m::TUNER_MAX_SEQS).set(t.max_seqs() as f64);
        }
        Self {
            sched,
            exec,
            rx,
            stats,
            tuner,
        }
    }

    pub fn run(mut self) {
        let r = catch_unwind(AssertUnwindSafe(|| self.serve()));
        if let Err(p) = r {
            self.fail(panic_message(p.as_ref()));
        }
        self.stats.stopped.store(true, Ordering::Release);
    }

    /// After a panic: the failure is recorded where the handle and the health check see
    /// it, every request in the engine gets an error, and so does every one that still
    /// arrives until all handles are gone.
    fn fail(&mut self, message: String) {
        tracing::error!(error = %message, "the engine loop panicked; failing every request");
        *self.stats.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
        self.stats.failed.store(true, Ordering::Release);
        metrics::gauge!(m::ENGINE_FAILED).set(1.0);
        self.sched.fail_all(&message);
        self.stats.running.store(0, Ordering::Release);
        self.stats.waiting.store(0, Ordering::Release);
        while let Ok(Command::Submit { tx, .. }) = self.rx.recv() {
            let _ = tx.send(Event::Error {
                message: message.clone(),
                engine_failed: true,
            });
        }
    }

    fn serve(&mut self) {
        loop {
            if self.sched.is_idle() {
                self.publish();
                match self.rx.recv() {
                    Ok(cmd) => self.intake(cmd),
                    Err(_) => return,
                }
                self.gather_burst();
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.intake(cmd);
            }
            self.step();
            self.publish();
        }
    }

    /// Waking from idle, takes in the rest of a burst before the first step: clients
    /// that finished together (equal lengths, a closed loop) send their next requests
    /// within a few milliseconds, and starting a step on the first of them would make the
    /// others wait for it. Gathers while requests keep coming less than `BURST_QUIET`
    /// apart, for at most `BURST_MAX`; a lone request waits `BURST_QUIET` once.
    fn gather_burst(&mut self) {
        let started = Instant::now();
        while started.elapsed() < BURST_MAX {
            match self.rx.recv_timeout(BURST_QUIET) {
                Ok(cmd) => self.intake(cmd),
                Err(_) => return,
            }
        }
    }

    fn intake(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                id,
                req,
                tx,
                arrival,
            } => self.sched.add(id, *req, tx, arrival),
        }
    }

    fn publish(&self) {
        let s = &self.stats;
        let pool = self.sched.pool();
        s.running.store(self.sched.running(), Ordering::Release);
        // Submissions that arrived during the step are still in the channel and are
        // counted again at the next intake; the handle's early increment covers them
        // only until this store, which is the accuracy a queue limit needs.
        s.waiting.store(self.sched.waiting(), Ordering::Release);
        s.kv_used.store(pool.used(), Ordering::Release);
        s.kv_cached.store(pool.cached_free(), Ordering::Release);
        // The cache's gauges first: a scrape that sees a request's end in the request
        // gauges then also sees its blocks freed (a test caught running = 0 beside the
        // blocks of the request just retired, scraped between the two stores).
        metrics::gauge!(m::KV_BLOCKS_USED).set(pool.used() as f64);
        metrics::gauge!(m::KV_USAGE).set(pool.used() as f64 / pool.total().max(1) as f64);
        metrics::gauge!(m::KV_BLOCKS_CACHED).set(pool.cached_free() as f64);
        metrics::gauge!(m::REQUESTS_RUNNING).set(self.sched.running() as f64);
        metrics::gauge!(m::REQUESTS_WAITING).set(self.sched.waiting() as f64);
    }

    fn step(&mut self) {
        let plan = self.sched.schedule(Instant::now());
        if plan.is_empty() {
            return;
        }
        for c in &plan.copies {
            self.exec.copy_block_prefix(c);
        }
        let started = Instant::now();
        let out = {
            let inputs = self.sched.inputs(&plan);
            self.exec.forward(&inputs)
        };
        self.stats.steps.fetch_add(1, Ordering::AcqRel);
        metrics::histogram!(m::STEP_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::ITERATION_TOKENS).record(plan.tokens() as f64);
        metrics::histogram!(m::STEP_SEQUENCES).record(plan.seqs.len() as f64);
        // A one-token chunk is a decode; longer ones are prefill.
        let decodes = plan.seqs.iter().filter(|s| s.len == 1).count();
        metrics::counter!(m::STEP_DECODE_TOKENS).increment(decodes as u64);
        metrics::counter!(m::STEP_PREFILL_TOKENS).increment((plan.tokens() - decodes) as u64);
        self.sched.update(plan, out, Instant::now());
        // The interval a stream sees between two tokens: the forward pass, sampling and
        // bookkeeping of the step.
        self.tune(started.elapsed().as_secs_f64(), decodes > 0);
    }

    /// Feeds the step to the SLO tuner and applies what it decides.
    fn tune(&mut self, secs: f64, decodes: bool) {
        let Some(t) = &mut self.tuner else { return };
        let before = (t.budget(), t.max_seqs());
        let p95 = t.itl_p95().unwrap_or(0.0);
        let Some((action, mean)) = t.observe(secs, decodes, self.sched.load(Instant::now())) else {
            return;
        };
        let (budget, seqs) = (t.budget(), t.max_seqs());
        self.sched.set_limits(budget, seqs);
        metrics::counter!(m::TUNER_DECISIONS, "action" => action.label()).increment(1);
        metrics::gauge!(m::TUNER_BUDGET).set(budget as f64);
        metrics::gauge!(m::TUNER_MAX_SEQS).set(seqs as f64);
        metrics::gauge!(m::TUNER_ITL_P95).set(p95);
        metrics::gauge!(m::TUNER_ITL_MEAN).set(mean);
        tracing::info!(
            action = action.label(),
            budget_from = before.0,
            budget_to = budget,
            max_seqs_from = before.1,
            max_seqs_to = seqs,
            itl_mean_ms = (mean * 1e3 * 10.0).round() / 10.0,
            itl_p95_ms = (p95 * 1e3 * 10.0).round() / 10.0,
            "tuner"
        );
    }
}
