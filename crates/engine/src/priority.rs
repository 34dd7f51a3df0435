//! Which waiting request goes next: interactive before batch always; within a class,
//! lowest priority value first, first-come first-served within a priority, and every
//! `AGING` of waiting improves the effective priority by one so that nothing starves.

use crate::request::PriorityClass;
use crate::sequence::Sequence;
use std::time::{Duration, Instant};

pub(crate) const AGING: Duration = Duration::from_secs(5);

pub(crate) fn effective_priority(s: &Sequence, now: Instant) -> i64 {
    let waited = now.saturating_duration_since(s.arrival).as_secs_f64();
    s.req.priority as i64 - (waited / AGING.as_secs_f64()) as i64
}

/// Index of the waiting sequence to admit next.
pub(crate) fn next_waiting(waiting: &[Sequence], now: Instant) -> Option<usize> {
    (0..waiting.len()).min_by_key(|&i| {
        (
            waiting[i].req.class,
            effective_priority(&waiting[i], now),
            waiting[i].arrival,
            waiting[i].id,
        )
    })
}

/// Running sequences in service order: interactive first, then best priority, then
/// oldest. Preemption takes victims from the end.
pub(crate) fn service_order(running: &[Sequence]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..running.len()).collect();
    idx.sort_by_key(|&i| {
        (
            running[i].req.class,
            running[i].req.priority,
            running[i].arrival,
            running[i].id,
        )
    });
    idx
}

/// Whether any waiting sequence is interactive.
pub(crate) fn interactive_waiting(waiting: &[Sequence]) -> bool {
    waiting
        .iter()
        .any(|s| s.req.class == PriorityClass::Interactive)
}
