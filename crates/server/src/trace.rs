//! Request ids and W3C trace context. A request's `traceparent` is continued (its trace
//! id kept, a new span id for this server's span, its flags and `tracestate` passed on);
//! without one, an `X-Trace-ID` of 32 hex digits names the trace; otherwise a new trace
//! starts. The ids go into the span of every log line of the request (the engine thread's
//! too, through the generation request) and back to the client on every response.

use axum::http::HeaderMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This server's span, 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span, when it sent a `traceparent`.
    pub parent_id: Option<String>,
    pub flags: u8,
    pub tracestate: Option<String>,
}

fn hex_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// `version-traceid-parentid-flags`; a future version may append fields, version ff is
/// invalid (W3C Trace Context, section 3.2).
fn parse_traceparent(v: &str) -> Option<(String, String, u8)> {
    let mut parts = v.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version_ok = version.len() == 2
        && version != "ff"
        && u8::from_str_radix(version, 16).is_ok()
        && (version != "00" || parts.next().is_none());
    if !version_ok || !hex_id(trace, 32) || !hex_id(parent, 16) || flags.len() != 2 {
        return None;
    }
    Some((
        trace.to_string(),
        parent.to_string(),
        u8::from_str_radix(flags, 16).ok()?,
    ))
}

impl TraceContext {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let text = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
        let span_id = format!("{:016x}", crate::ids::unique_u64());
        if let Some((trace_id, parent, flags)) = text("traceparent").and_then(parse_traceparent) {
            return Self {
                trace_id,
                span_id,
                parent_id: Some(parent),
                flags,
                tracestate: text("tracestate")
                    .filter(|s| s.len() <= 512)
                    .map(str::to_string),
            };
        }
        let trace_id = text("x-trace-id")
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| hex_id(v, 32))
            .unwrap_or_else(|| {
                format!(
                    "{:016x}{:016x}",
                    crate::ids::unique_u64(),
                    crate::ids::unique_u64()
                )
            });
        Self {
            trace_id,
            span_id,
            parent_id: None,
            // Sampled: a new trace is recorded.
            flags: 1,
            tracestate: None,
        }
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// The ids a request carries into the handlers (a request extension).
#[derive(Clone, Debug)]
pub struct RequestIds {
    pub request_id: String,
    pub trace: TraceContext,
    /// The server span's context, with `--otlp-traces-endpoint`.
    pub span: Option<opentelemetry::Context>,
    /// The answer's token counts, for the access line and the server span.
    pub tokens: Arc<TokenCount>,
}

/// A request's usage, once its reply knows it.
#[derive(Debug, Default)]
pub struct TokenCount {
    prompt: AtomicU64,
    completion: AtomicU64,
    known: AtomicBool,
}

impl TokenCount {
    pub fn set(&self, prompt: usize, completion: usize) {
        self.prompt.store(prompt as u64, Ordering::Relaxed);
        self.completion.store(completion as u64, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
    }

    /// (prompt, completion).
    pub fn get(&self) -> Option<(u64, u64)> {
        self.known.load(Ordering::Acquire).then(|| {
            (
                self.prompt.load(Ordering::Relaxed),
                self.completion.load(Ordering::Relaxed),
            )
        })
    }
}

/// The engine's tag for a request's generations.
pub fn tag(ext: &axum::http::Extensions) -> Option<std::sync::Arc<engine::RequestTag>> {
    ext.get::<RequestIds>().map(|ids| {
        std::sync::Arc::new(engine::RequestTag {
            request_id: ids.request_id.clone(),
            trace_id: ids.trace.trace_id.clone(),
            traced: ids
                .span
                .as_ref()
                .is_some_and(crate::otel::genai::is_sampled),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::from_headers(&headers(&[("traceparent", tp), ("tracestate", "a=1")]));
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(c.span_id, "00f067aa0ba902b7");
        assert_eq!(c.tracestate.as_deref(), Some("a=1"));
        assert!(c
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(c.traceparent().ends_with("-01"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let c = TraceContext::from_headers(&headers(&[("traceparent", bad)]));
            assert_eq!(c.parent_id, None, "{bad}");
            assert!(hex_id(&c.trace_id, 32));
            assert_ne!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        }
        // A later version may carry more fields.
        let c = TraceContext::from_headers(&headers(&[(
            "traceparent",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )]));
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn x_trace_id_names_the_trace_when_there_is_no_traceparent() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let c = TraceContext::from_headers(&headers(&[("x-trace-id", id)]));
        assert_eq!(c.trace_id, id);
        let fresh = TraceContext::from_headers(&headers(&[("x-trace-id", "not-hex")]));
        assert!(hex_id(&fresh.trace_id, 32));
        assert_ne!(
            fresh.trace_id,
            TraceContext::from_headers(&HeaderMap::new()).trace_id
        );
    }
}
