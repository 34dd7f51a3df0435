//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when `--otlp-traces-endpoint`
//! is given. Each HTTP request gets a server span (its ids are the ones in the request's
//! logs and `traceparent` response header), and each run of the model a generation span
//! inside it with the GenAI semantic conventions' attributes and vLLM's latency
//! breakdown. Spans are batched and exported off the request path: an unreachable or
//! slow collector costs dropped spans (counted), never a slower or failed request.

mod export;
pub mod genai;
mod ids;
pub mod server_span;

pub use export::{SPANS_DROPPED, SPANS_EXPORTED};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP traces URL; a bare `http://host:port` gets
    /// `/v1/traces` appended, as `OTEL_EXPORTER_OTLP_ENDPOINT` does.
    pub endpoint: String,
    /// The share of new traces recorded; a caller's `traceparent` decides for its own.
    pub sample_ratio: f64,
    pub service_name: String,
    /// How long one export may take before its spans count as dropped.
    pub export_timeout: Duration,
    /// Spans waiting for export before more are dropped (and counted).
    pub queue_capacity: usize,
}

impl TracingConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            sample_ratio: 1.0,
            service_name: "autoglm".into(),
            export_timeout: Duration::from_secs(10),
            queue_capacity: 2048,
        }
    }
}

pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    match e.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{e}/v1/traces"),
        _ => e.to_string(),
    }
}

impl Tracing {
    /// Builds the exporter and starts its batching thread. Call it outside an async
    /// runtime: reqwest's blocking client may not be built inside one.
    pub fn start(cfg: &TracingConfig) -> Result<Arc<Self>, String> {
        if !(0.0..=1.0).contains(&cfg.sample_ratio) {
            return Err(format!(
                "the sample ratio must be within 0..=1, not {}",
                cfg.sample_ratio
            ));
        }
        let url = traces_url(&cfg.endpoint);
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "the OTLP endpoint must be an http(s) URL, not {url}"
            ));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(cfg.export_timeout)
            .build()
            .map_err(|e| format!("building the OTLP client: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export::BlockingHttp(client))
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(cfg.export_timeout)
            .build()
            .map_err(|e| format!("building the OTLP exporter: {e}"))?;
        let capacity = cfg.queue_capacity.max(1);
        let pending = Arc::new(export::Pending::default());
        let processor = BatchSpanProcessor::builder(export::Counted {
            inner: exporter,
            pending: pending.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(capacity)
                .build(),
        )
        .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(export::Bounded {
                inner: processor,
                pending,
                capacity,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sample_ratio,
            ))))
            .with_id_generator(ids::PresetIds)
            .with_resource(resource)
            .build();
        export::describe();
        let tracer = provider.tracer("autoglm");
        Ok(Arc::new(Self { provider, tracer }))
    }

    /// Exports what is queued and stops the exporter (at most `timeout`). Call it
    /// outside an async runtime, like `start`.
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "flushing the OTLP exporter at exit");
        }
    }

    pub(crate) fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_bare_endpoint_gets_the_traces_path() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/custom"), "http://c:4318/custom");
    }
}
