//! Span and trace ids for the SDK: the ids this server already chose for a request (in
//! its logs and response headers) when one is preset on this thread, else fresh ones.
//! The SDK asks its id generator while it builds a span, synchronously, so a preset
//! made just before the build on the same thread is the one it takes.

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::IdGenerator;
use std::cell::Cell;

thread_local! {
    static TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
    static SPAN: Cell<Option<SpanId>> = const { Cell::new(None) };
}

#[derive(Debug, Default)]
pub(crate) struct PresetIds;

impl IdGenerator for PresetIds {
    fn new_trace_id(&self) -> TraceId {
        TRACE.take().unwrap_or_else(|| {
            let hi = crate::ids::unique_u64() as u128;
            TraceId::from(hi << 64 | crate::ids::unique_u64() as u128)
        })
    }

    fn new_span_id(&self) -> SpanId {
        SPAN.take()
            .unwrap_or_else(|| SpanId::from(crate::ids::unique_u64()))
    }
}

/// Runs `build` with the next ids preset, and clears what it did not take (a span with
/// a parent keeps the parent's trace id and never asks for one).
pub(crate) fn with_ids<T>(trace: TraceId, span: SpanId, build: impl FnOnce() -> T) -> T {
    TRACE.set(Some(trace));
    SPAN.set(Some(span));
    let out = build();
    TRACE.set(None);
    SPAN.set(None);
    out
}
