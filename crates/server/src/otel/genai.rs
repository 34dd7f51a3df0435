//! The generation span: one per request that runs the model, a child of its server
//! span, with the GenAI semantic conventions' request and usage attributes, vLLM's
//! latency breakdown (`gen_ai.latency.*`, seconds) and events for what happened to each
//! choice on the way (scheduled, first token, preempted, cancelled) at the times they
//! happened. Each choice reports when it is dropped, however it ended; the span ends
//! when the last one has.

use super::Tracing;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// What the server knows of a request when it submits its choices.
pub struct GenerationInfo<'a> {
    /// `chat` or `text_completion`.
    pub operation: &'static str,
    pub model: &'a str,
    pub request_id: &'a str,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: Option<usize>,
    pub seed: Option<u64>,
    pub n: usize,
    pub choices: usize,
}

/// One choice's story, told when its run is dropped.
#[derive(Clone, Debug, Default)]
pub struct ChoiceReport {
    pub scheduled: Option<Instant>,
    pub first_token: Option<Instant>,
    pub last_token: Option<Instant>,
    pub preempted: Vec<Instant>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
    /// `stop`, `length`…; `None` when it did not finish.
    pub finish: Option<&'static str>,
    pub error: Option<String>,
}

pub struct GenerationTrace {
    span: opentelemetry_sdk::trace::Span,
    start: Instant,
    start_wall: SystemTime,
    n: usize,
    reports: Mutex<Vec<(usize, ChoiceReport, Instant)>>,
}

impl GenerationTrace {
    /// `None` unless the parent is sampled: an unsampled request pays for nothing.
    pub fn start(t: &Tracing, parent: &Context, info: &GenerationInfo) -> Option<Self> {
        if !parent.span().span_context().is_sampled() {
            return None;
        }
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", info.operation),
            KeyValue::new("gen_ai.provider.name", "autoglm"),
            KeyValue::new("gen_ai.request.model", info.model.to_string()),
            KeyValue::new("gen_ai.request.temperature", info.temperature),
            KeyValue::new("gen_ai.request.top_p", info.top_p),
            KeyValue::new("gen_ai.request.id", info.request_id.to_string()),
            KeyValue::new("gen_ai.request.n", info.n as i64),
            KeyValue::new("gen_ai.usage.num_sequences", info.choices as i64),
        ];
        if let Some(m) = info.max_tokens {
            attrs.push(KeyValue::new("gen_ai.request.max_tokens", m as i64));
        }
        if let Some(s) = info.seed {
            attrs.push(KeyValue::new("gen_ai.request.seed", s as i64));
        }
        let builder = t
            .tracer()
            .span_builder(format!("{} {}", info.operation, info.model))
            .with_kind(SpanKind::Internal)
            .with_attributes(attrs);
        Some(Self {
            span: t.tracer().build_with_context(builder, parent),
            start: Instant::now(),
            start_wall: SystemTime::now(),
            n: info.n.max(1),
            reports: Mutex::new(Vec::new()),
        })
    }

    pub fn report(&self, choice: usize, r: ChoiceReport) {
        if let Ok(mut v) = self.reports.lock() {
            v.push((choice, r, Instant::now()));
        }
    }

    fn wall(&self, t: Instant) -> SystemTime {
        self.start_wall + t.saturating_duration_since(self.start)
    }
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

impl Drop for GenerationTrace {
    fn drop(&mut self) {
        let mut reports = std::mem::take(self.reports.get_mut().unwrap_or_else(|e| e.into_inner()));
        reports.sort_by_key(|(c, ..)| *c);
        let end = Instant::now();
        let mut events = Vec::new();
        for (choice, r, at) in &reports {
            let c = || vec![KeyValue::new("gen_ai.choice.index", *choice as i64)];
            if let Some(s) = r.scheduled {
                events.push((s, "scheduled", c()));
            }
            if let Some(f) = r.first_token {
                events.push((f, "first_token", c()));
            }
            for p in &r.preempted {
                events.push((*p, "preempted", c()));
            }
            if r.finish.is_none() && r.error.is_none() {
                events.push((*at, "cancelled", c()));
            }
        }
        events.sort_by_key(|(t, ..)| *t);
        for (t, name, attrs) in events {
            let at = self.wall(t);
            self.span.add_event_with_timestamp(name, at, attrs);
        }
        let earliest = |f: fn(&ChoiceReport) -> Option<Instant>| {
            reports.iter().filter_map(|(_, r, _)| f(r)).min()
        };
        let scheduled = earliest(|r| r.scheduled);
        let first = earliest(|r| r.first_token);
        let last = reports.iter().filter_map(|(_, r, _)| r.last_token).max();
        let mut attrs = vec![
            KeyValue::new("gen_ai.latency.e2e", secs(self.start, end)),
            KeyValue::new(
                "gen_ai.usage.input_tokens",
                // Each prompt once, however many choices it has (as `usage` counts).
                reports
                    .iter()
                    .filter(|(c, ..)| c % self.n == 0)
                    .map(|(_, r, _)| r.prompt_tokens)
                    .sum::<usize>() as i64,
            ),
            KeyValue::new(
                "gen_ai.usage.output_tokens",
                reports
                    .iter()
                    .map(|(_, r, _)| r.completion_tokens)
                    .sum::<usize>() as i64,
            ),
            KeyValue::new(
                "gen_ai.usage.cached_tokens",
                reports
                    .iter()
                    .filter(|(c, ..)| c % self.n == 0)
                    .map(|(_, r, _)| r.cached_tokens)
                    .sum::<usize>() as i64,
            ),
            KeyValue::new(
                "gen_ai.response.finish_reasons",
                Value::Array(
                    reports
                        .iter()
                        .map(|(_, r, _)| StringValue::from(r.finish.unwrap_or("abort")))
                        .collect::<Vec<_>>()
                        .into(),
                ),
            ),
        ];
        if let Some(s) = scheduled {
            attrs.push(KeyValue::new(
                "gen_ai.latency.time_in_queue",
                secs(self.start, s),
            ));
        }
        if let Some(f) = first {
            attrs.push(KeyValue::new(
                "gen_ai.latency.time_to_first_token",
                secs(self.start, f),
            ));
            if let Some(s) = scheduled {
                attrs.push(KeyValue::new(
                    "gen_ai.latency.time_in_model_prefill",
                    secs(s, f),
                ));
            }
            if let Some(l) = last {
                attrs.push(KeyValue::new(
                    "gen_ai.latency.time_in_model_decode",
                    secs(f, l),
                ));
            }
        }
        if let (Some(s), Some(l)) = (scheduled, last) {
            attrs.push(KeyValue::new(
                "gen_ai.latency.time_in_model_inference",
                secs(s, l),
            ));
        }
        self.span.set_attributes(attrs);
        if let Some(e) = reports.iter().find_map(|(_, r, _)| r.error.clone()) {
            self.span
                .set_attribute(KeyValue::new("error.type", "generation_failed"));
            self.span.set_status(Status::error(e));
        }
        self.span.end();
    }
}

/// Whether a request's spans are recorded (its engine requests then report their
/// scheduling and preemptions as events).
pub fn is_sampled(cx: &Context) -> bool {
    cx.span().span_context().is_sampled()
}
