//! The exporting end: OTLP/HTTP through a blocking client, and the counts of spans
//! exported and dropped. The batch processor exports from its own thread, where no
//! async runtime runs: an async client there never completes a request and every span
//! is lost without a word, so the client is reqwest's blocking one.

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const SPANS_EXPORTED: &str = "autoglm_otlp_spans_exported_total";
pub const SPANS_DROPPED: &str = "autoglm_otlp_spans_dropped_total";

pub(crate) fn describe() {
    metrics::describe_counter!(SPANS_EXPORTED, "Spans the OTLP collector accepted.");
    metrics::describe_counter!(
        SPANS_DROPPED,
        "Spans never delivered, by reason: export_failed (the collector was unreachable or refused them) or queue_full (more spans ended than the exporter kept up with)."
    );
    metrics::counter!(SPANS_EXPORTED).absolute(0);
    for reason in ["export_failed", "queue_full"] {
        metrics::counter!(SPANS_DROPPED, "reason" => reason).absolute(0);
    }
}

#[derive(Debug)]
pub(crate) struct BlockingHttp(pub reqwest::blocking::Client);

#[async_trait::async_trait]
impl HttpClient for BlockingHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let resp = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut out = Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        Ok(out.body(resp.bytes()?)?)
    }
}

/// Spans handed to the processor and not yet exported or dropped, shared by the two
/// wrappers below: the processor refuses (and counts) a span when its queue is full, so
/// the SDK's own queue never drops one uncounted.
#[derive(Debug, Default)]
pub(crate) struct Pending(AtomicUsize);

#[derive(Debug)]
pub(crate) struct Counted<E> {
    pub inner: E,
    pub pending: Arc<Pending>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let r = self.inner.export(batch).await;
        self.pending.0.fetch_sub(n, Ordering::AcqRel);
        match &r {
            Ok(()) => metrics::counter!(SPANS_EXPORTED).increment(n as u64),
            Err(e) => {
                metrics::counter!(SPANS_DROPPED, "reason" => "export_failed").increment(n as u64);
                tracing::debug!(error = %e, spans = n, "OTLP export failed");
            }
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

#[derive(Debug)]
pub(crate) struct Bounded<P> {
    pub inner: P,
    pub pending: Arc<Pending>,
    pub capacity: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.pending.0.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.0.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(SPANS_DROPPED, "reason" => "queue_full").increment(1);
            return;
        }
        self.inner.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}
