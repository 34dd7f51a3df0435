//! A real OTLP/HTTP traces receiver on 127.0.0.1: it decodes each export with the
//! official protobuf definitions (opentelemetry-proto) and keeps the spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    service_names: Vec<String>,
    exports: usize,
}

pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Received>>,
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Received::default()));
        let state = got.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        let state = state.clone();
                        async move {
                            let req = match ExportTraceServiceRequest::decode(body) {
                                Ok(r) => r,
                                Err(_) => return (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
                            };
                            let mut g = state.lock().unwrap();
                            g.exports += 1;
                            for rs in req.resource_spans {
                                if let Some(name) = rs
                                    .resource
                                    .as_ref()
                                    .and_then(|r| string_attr(&r.attributes, "service.name"))
                                {
                                    g.service_names.push(name);
                                }
                                for ss in rs.scope_spans {
                                    g.spans.extend(ss.spans);
                                }
                            }
                            // An empty ExportTraceServiceResponse: everything accepted.
                            (axum::http::StatusCode::OK, Vec::new())
                        }
                    }),
                );
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        Receiver { port, got }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.got.lock().unwrap().spans.clone()
    }

    pub fn service_names(&self) -> Vec<String> {
        self.got.lock().unwrap().service_names.clone()
    }

    /// The spans of one trace (32 hex digits), once at least `n` of them arrived.
    pub fn wait_for(&self, trace_id: &str, n: usize) -> Vec<Span> {
        let t = Instant::now();
        loop {
            let got: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect();
            if got.len() >= n || t.elapsed() > Duration::from_secs(20) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Any> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

pub fn int(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(Any::IntValue(v)) => *v,
        other => panic!("{key}: {other:?} in {}", s.name),
    }
}

pub fn float(s: &Span, key: &str) -> f64 {
    match attr(s, key) {
        Some(Any::DoubleValue(v)) => *v,
        other => panic!("{key}: {other:?} in {}", s.name),
    }
}

pub fn string(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(Any::StringValue(v)) => v.clone(),
        other => panic!("{key}: {other:?} in {}", s.name),
    }
}

pub fn strings(s: &Span, key: &str) -> Vec<String> {
    match attr(s, key) {
        Some(Any::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{key}: {other:?} in {}", s.name),
    }
}
