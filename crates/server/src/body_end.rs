//! The end of a response body: when it is sent (or the client goes away and it is
//! dropped), the request's access line is logged and its server span ends, so both
//! cover a stream's whole life, not just the time to its headers.

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub(crate) struct Done {
    pub log_span: tracing::Span,
    pub otel: Option<opentelemetry::Context>,
    pub tokens: Arc<crate::trace::TokenCount>,
    pub start: std::time::Instant,
    pub status: u16,
    pub route: &'static str,
    pub cache: String,
}

impl Drop for Done {
    fn drop(&mut self) {
        let _entered = self.log_span.enter();
        let tokens = self.tokens.get();
        if let (Some(cx), Some((p, c))) = (&self.otel, tokens) {
            crate::otel::server_span::record_tokens(cx, p, c);
        }
        let (prompt_tokens, completion_tokens) = tokens.unzip();
        tracing::info!(
            status = self.status,
            route = self.route,
            ms = self.start.elapsed().as_secs_f64() * 1e3,
            prompt_tokens,
            completion_tokens,
            cache = self.cache.as_str(),
            "response"
        );
        if let Some(cx) = &self.otel {
            crate::otel::server_span::end(cx);
        }
    }
}

struct Ending {
    inner: Body,
    done: Option<Done>,
}

impl HttpBody for Ending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            // Ended now rather than whenever the connection lets go of the body.
            self.done = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) fn with_end(inner: Body, done: Done) -> Body {
    Body::new(Ending {
        inner,
        done: Some(done),
    })
}
