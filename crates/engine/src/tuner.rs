//! The SLO-driven controller of the step budget (`--auto-tune`).
//!
//! What a running stream waits between two tokens is the duration of the step that
//! computes them, and a step's duration grows with the tokens in it: the decodes
//! themselves plus whatever prefill chunks ride along (Sarathi-Serve's token budget).
//! A large budget drains the waiting queue fast (good TTFT, throughput) and makes a few
//! decode steps long; a small one makes every step carry a small chunk, drains the
//! queue slowly and starves TTFT. The right budget depends on the model, the machine,
//! the prompt lengths and the load, so it is measured, not configured.
//!
//! Every step that carried decodes is one inter-token interval; the controller keeps the
//! last `WINDOW` of them. It steers their *mean* — the TPOT the running streams are
//! getting — with the 95th percentile as a guard against rare, very long steps:
//!
//! * mean above 0.9 × the ITL objective (or p95 above 2 ×): shrink the budget × 0.7, so
//!   violations are corrected within a few steps;
//! * mean below 0.7 × (and p95 below 1.5 ×) while requests wait or prompts are being
//!   prefilled: grow by `GROW` tokens — throughput is taken back slowly, and the loop does
//!   not oscillate (AIMD, as TCP's congestion window);
//! * with a TTFT objective, once the oldest waiting request has waited half of it the
//!   queue is the risk: the budget grows by a quarter (at least `GROW`) while the mean is
//!   under 0.9 ×, and shrinks only when the mean is over the objective itself;
//! * at the floor and still too slow, the running sequences themselves make steps too
//!   long: admission is capped (the sequence limit shrinks × 0.8) until the latency
//!   recovers, then reopened one sequence at a time.
//!
//! Why the mean and not the p95 (measured, docs/benchmarks.md): the p95 of step
//! intervals is set by the few steps that carry prefill chunks; pushing it down spreads
//! prefill over many more steps, which raises every stream's mean interval and the
//! queue's TTFT — a p95 controller drove the budget to its floor at 1 req/s and lost a
//! third of the goodput at 1.5 req/s.
//!
//! After each change it waits `COOLDOWN` decode steps, so that it judges the new
//! setting on steps that ran under it.

use std::collections::VecDeque;
use std::time::Duration;

const WINDOW: usize = 32;
const COOLDOWN: usize = 12;
const SHRINK: f64 = 0.7;
const GROW: f64 = 32.0;
const SEQ_SHRINK: f64 = 0.8;

#[derive(Clone, Debug, PartialEq)]
pub struct TunerConfig {
    /// The inter-token latency the 95th percentile must stay under.
    pub slo_itl: Duration,
    /// The time to first token requests should get (lets the budget grow harder).
    pub slo_ttft: Option<Duration>,
    /// Bounds of the step budget (tokens per step while decoding).
    pub min_budget: usize,
    pub max_budget: usize,
    /// Bound of the sequence limit (the configured `max_seqs`).
    pub max_seqs: usize,
}

/// What the controller did after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Grow,
    Shrink,
    CapSeqs,
    OpenSeqs,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Self::Grow => "grow",
            Self::Shrink => "shrink",
            Self::CapSeqs => "cap_seqs",
            Self::OpenSeqs => "open_seqs",
        }
    }
}

/// The queue as the controller sees it after a step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    /// Requests waiting for admission.
    pub waiting: usize,
    /// Running sequences still prefilling their prompts.
    pub prefilling: usize,
    /// How long the oldest waiting request has waited.
    pub oldest_wait: Duration,
}

pub struct Tuner {
    cfg: TunerConfig,
    budget: f64,
    max_seqs: f64,
    itl: VecDeque<f64>,
    since_change: usize,
}

impl Tuner {
    /// Starts at `start_budget` (the configured `max_batch_tokens`) and `max_seqs`.
    pub fn new(cfg: TunerConfig, start_budget: usize) -> Self {
        let min = cfg.min_budget.max(1);
        let max = cfg.max_budget.max(min);
        Self {
            budget: start_budget.clamp(min, max) as f64,
            max_seqs: cfg.max_seqs.max(1) as f64,
            cfg: TunerConfig {
                min_budget: min,
                max_budget: max,
                ..cfg
            },
            itl: VecDeque::with_capacity(WINDOW),
            since_change: 0,
        }
    }

    pub fn budget(&self) -> usize {
        self.budget.round() as usize
    }

    pub fn max_seqs(&self) -> usize {
        self.max_seqs.round().max(1.0) as usize
    }

    /// The 95th percentile of the recent inter-token intervals, once there are enough.
    pub fn itl_p95(&self) -> Option<f64> {
        if self.itl.len() < WINDOW / 2 {
            return None;
        }
        let mut v: Vec<f64> = self.itl.iter().copied().collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        Some(v[(v.len() * 95).div_ceil(100).saturating_sub(1)])
    }

    /// The mean of the recent inter-token intervals, once there are enough.
    pub fn itl_mean(&self) -> Option<f64> {
        (self.itl.len() >= WINDOW / 2).then(|| self.itl.iter().sum::<f64>() / self.itl.len() as f64)
    }

    /// After a step of `secs` that carried decodes (`decodes`), with the queue `load`:
    /// what it changed, and the mean interval that decided it.
    pub fn observe(&mut self, secs: f64, decodes: bool, load: Load) -> Option<(Action, f64)> {
        if !decodes {
            return None;
        }
        if self.itl.len() == WINDOW {
            self.itl.pop_front();
        }
        self.itl.push_back(secs);
        self.since_change += 1;
        if self.since_change < COOLDOWN {
            return None;
        }
        let (mean, p95) = (self.itl_mean()?, self.itl_p95()?);
        let slo = self.cfg.slo_itl.as_secs_f64();
        let (min, max) = (self.cfg.min_budget as f64, self.cfg.max_budget as f64);
        let pending = load.waiting > 0 || load.prefilling > 0;
        let queue_at_risk = self
            .cfg
            .slo_ttft
            .is_some_and(|t| load.waiting > 0 && load.oldest_wait * 2 > t);
        let too_slow = if queue_at_risk {
            mean > slo
        } else {
            mean > 0.9 * slo || p95 > 2.0 * slo
        };
        let action = if too_slow {
            if self.budget >= min + 1.0 {
                self.budget = (self.budget * SHRINK).max(min);
                Action::Shrink
            } else if self.max_seqs > 1.0 {
                self.max_seqs = (self.max_seqs * SEQ_SHRINK).floor().max(1.0);
                Action::CapSeqs
            } else {
                return None;
            }
        } else if mean < 0.7 * slo && self.max_seqs < self.cfg.max_seqs as f64 {
            self.max_seqs += 1.0;
            Action::OpenSeqs
        } else if queue_at_risk && self.budget < max && mean < 0.9 * slo {
            self.budget = (self.budget + (self.budget * 0.25).max(GROW)).min(max);
            Action::Grow
        } else if pending && self.budget < max && mean < 0.7 * slo && p95 < 1.5 * slo {
            self.budget = (self.budget + GROW).min(max);
            Action::Grow
        } else {
            return None;
        };
        self.since_change = 0;
        // Intervals measured under the old setting no longer say much about the new one.
        let keep = self.itl.len() / 2;
        while self.itl.len() > keep {
            self.itl.pop_front();
        }
        Some((action, mean))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuner() -> Tuner {
        Tuner::new(
            TunerConfig {
                slo_itl: Duration::from_millis(50),
                slo_ttft: None,
                min_budget: 16,
                max_budget: 2048,
                max_seqs: 64,
            },
            512,
        )
    }

    /// A machine whose decode step takes 10 ms plus 0.1 ms per budget token (when there
    /// is prefill to fill the budget with).
    fn run(t: &mut Tuner, steps: usize, pending: bool) {
        for _ in 0..steps {
            let tokens = if pending { t.budget() as f64 } else { 0.0 };
            let secs = 0.010 + 0.0001 * tokens;
            t.observe(
                secs,
                true,
                Load {
                    waiting: usize::from(pending),
                    prefilling: 0,
                    oldest_wait: Duration::ZERO,
                },
            );
        }
    }

    #[test]
    fn it_settles_where_the_slo_is_met_with_the_most_throughput() {
        let mut t = tuner();
        run(&mut t, 2000, true);
        // 10 ms + 0.1 ms × budget ≤ 45 ms (0.9 × SLO) at budget ≤ 350; growth stops at
        // 0.7 × SLO = 35 ms (budget 250). It ends between, not at the floor.
        let b = t.budget();
        assert!((200..=360).contains(&b), "budget {b}");
        assert_eq!(t.max_seqs(), 64);
    }

    #[test]
    fn without_waiting_work_it_does_not_grow_and_overload_shrinks_it_fast() {
        let mut t = tuner();
        run(&mut t, 500, false);
        assert_eq!(t.budget(), 512, "steps are short; nothing to gain");
        // 512 tokens of prefill per step: 61 ms > 45 ms. Each shrink is × 0.7.
        let mut shrinks = 0;
        for _ in 0..60 {
            let secs = 0.010 + 0.0001 * t.budget() as f64;
            if t.observe(
                secs,
                true,
                Load {
                    waiting: 1,
                    ..Load::default()
                },
            )
            .map(|a| a.0)
                == Some(Action::Shrink)
            {
                shrinks += 1;
            }
        }
        assert!(
            shrinks >= 1 && t.budget() <= 358,
            "{shrinks} shrinks, budget {}",
            t.budget()
        );
    }

    #[test]
    fn a_queue_about_to_miss_its_ttft_lets_the_budget_grow_closer_to_the_itl_objective() {
        let cfg = TunerConfig {
            slo_ttft: Some(Duration::from_secs(2)),
            ..tuner().cfg
        };
        let grown = |oldest: u64| {
            let mut t = Tuner::new(cfg.clone(), 256);
            for _ in 0..200 {
                // 42.5 ms: over 0.7 × the objective, under 0.9 ×.
                t.observe(
                    0.0425,
                    true,
                    Load {
                        waiting: 3,
                        prefilling: 1,
                        oldest_wait: Duration::from_millis(oldest),
                    },
                );
            }
            t.budget()
        };
        assert_eq!(grown(200), 256, "a young queue: hold");
        assert!(
            grown(1500) > 256,
            "waited 1.5 s of a 2 s TTFT objective: grow"
        );
    }

    #[test]
    fn at_the_floor_admission_is_capped_and_reopened_later() {
        let mut t = tuner();
        for _ in 0..400 {
            t.observe(0.080, true, Load::default());
        }
        assert_eq!(t.budget(), 16);
        assert!(t.max_seqs() < 64, "{}", t.max_seqs());
        for _ in 0..4000 {
            t.observe(0.010, true, Load::default());
        }
        assert_eq!(t.max_seqs(), 64);
    }
}
