//! The HTTP server span of one request (semantic conventions for HTTP servers): begun
//! when the request arrives, under the caller's `traceparent`, ended when the response
//! body is done, so a stream's span lasts as long as the stream.

use super::Tracing;
use crate::trace::TraceContext;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};

/// Starts the span with the ids `trace` already holds, and records the sampling
/// decision in `trace.flags`, so the `traceparent` sent back says whether it is kept.
pub fn start(
    t: &Tracing,
    trace: &mut TraceContext,
    method: &str,
    path: &str,
    route: &'static str,
    user_agent: Option<&str>,
) -> Context {
    let trace_id = TraceId::from_hex(&trace.trace_id).unwrap_or(TraceId::INVALID);
    let span_id = SpanId::from_hex(&trace.span_id).unwrap_or(SpanId::INVALID);
    let parent = match trace.parent_id.as_deref().map(SpanId::from_hex) {
        Some(Ok(parent_id)) => Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            parent_id,
            TraceFlags::new(trace.flags),
            true,
            trace
                .tracestate
                .as_deref()
                .and_then(|s| s.parse::<TraceState>().ok())
                .unwrap_or_default(),
        )),
        _ => Context::new(),
    };
    let mut attrs = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("url.path", path.to_string()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("http.route", route),
    ];
    if let Some(ua) = user_agent {
        attrs.push(KeyValue::new("user_agent.original", ua.to_string()));
    }
    let builder = t
        .tracer()
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(attrs);
    let span = super::ids::with_ids(trace_id, span_id, || {
        t.tracer().build_with_context(builder, &parent)
    });
    let sampled = span.span_context().is_sampled();
    trace.flags = (trace.flags & !1) | u8::from(sampled);
    parent.with_span(span)
}

/// What the response said, set before the span ends.
pub fn record_response(cx: &Context, status: u16, request_id: &str, cache: &str) {
    let span = cx.span();
    if !span.is_recording() {
        return;
    }
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    span.set_attribute(KeyValue::new("autoglm.request_id", request_id.to_string()));
    if cache != "-" {
        span.set_attribute(KeyValue::new("autoglm.cache", cache.to_string()));
    }
    // A server span is an error only for a 5xx: a 4xx is the caller's mistake.
    if status >= 500 {
        span.set_attribute(KeyValue::new("error.type", status.to_string()));
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}

pub fn record_tokens(cx: &Context, prompt: u64, completion: u64) {
    let span = cx.span();
    if span.is_recording() {
        span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", prompt as i64));
        span.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            completion as i64,
        ));
    }
}

pub fn end(cx: &Context) {
    cx.span().end();
}
