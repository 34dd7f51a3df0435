//! The accept loop: HTTP/1.1 and h2c on one port, with the limits that keep slow or idle
//! clients from holding the server (header-read timeout, idle timeout, a cap on
//! connections), and a drain that keeps answering (503) while in-flight requests finish.

use crate::state::{AppState, ConnLimits};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub const CONNECTIONS_OPEN: &str = "autoglm_http_connections_open";
pub const CONNECTIONS_REFUSED: &str = "autoglm_http_connections_refused_total";
pub const CONNECTIONS_IDLE_CLOSED: &str = "autoglm_http_connections_idle_closed_total";
/// Responses by route and status (recorded by the request-id middleware).
pub const HTTP_REQUESTS: &str = "autoglm_http_requests_total";

fn describe_http_metrics() {
    metrics::describe_gauge!(CONNECTIONS_OPEN, "HTTP connections open now.");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed on arrival because --max-connections were open."
    );
    metrics::describe_counter!(
        CONNECTIONS_IDLE_CLOSED,
        "Connections closed after --idle-timeout-s without a request."
    );
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP responses, by route and status.");
    metrics::describe_histogram!(
        crate::GRAMMAR_COMPILE_SECONDS,
        metrics::Unit::Seconds,
        "Time to compile a request's output constraint (JSON schema, regex, choice or grammar)."
    );
    metrics::describe_histogram!(
        constrain::MASK_SECONDS,
        metrics::Unit::Seconds,
        "Time to compute one decoding step's token mask for one constrained sequence."
    );
    metrics::gauge!(CONNECTIONS_OPEN).set(0.0);
    metrics::counter!(CONNECTIONS_REFUSED).increment(0);
    metrics::counter!(CONNECTIONS_IDLE_CLOSED).increment(0);
}

fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A TCP stream that remembers when it last moved a byte either way.
struct ActivityIo {
    inner: TcpStream,
    last: Arc<AtomicU64>,
}

impl ActivityIo {
    fn touch(&self) {
        self.last.store(millis(), Ordering::Relaxed);
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves one connection until it ends, or until it has been idle (no request in
/// flight, no byte either way) for `idle`, which also covers a client that connects and
/// never sends a request line.
async fn serve_connection(tcp: TcpStream, app: Router, limits: ConnLimits) {
    let _ = tcp.set_nodelay(true);
    let last = Arc::new(AtomicU64::new(millis()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let io = TokioIo::new(ActivityIo {
        inner: tcp,
        last: last.clone(),
    });
    let counter = in_flight.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        counter.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(counter.clone());
        let app = app.clone();
        async move {
            let r = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(guard);
            r
        }
    });
    let b = builder(&limits);
    let conn = b.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let every = Duration::from_millis(500)
        .min(idle / 2)
        .max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tick.tick() => {
                if let Some(t) = closing {
                    if t.elapsed() > Duration::from_secs(5) {
                        return;
                    }
                    continue;
                }
                let quiet = Duration::from_millis(millis().saturating_sub(last.load(Ordering::Relaxed)));
                if in_flight.load(Ordering::Acquire) == 0 && quiet >= idle {
                    metrics::counter!(CONNECTIONS_IDLE_CLOSED).increment(1);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
            }
        }
    }
}

/// Binds, serves until SIGINT/SIGTERM, then drains: new requests get 503 while the
/// running ones finish, for up to `config.shutdown_grace`; streams still running then
/// end with an error event.
pub async fn serve(state: Arc<AppState>, addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve_on(state, listener, crate::wait_for_signal()).await
}

/// As [`serve`], on a bound listener, draining when `shutdown` completes.
pub async fn serve_on(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(%local, "listening");
    let app = crate::router(state.clone());
    let limits = state.config.limits.clone();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    describe_http_metrics();
    crate::dashboard::spawn_sampler(state.clone());
    tokio::pin!(shutdown);
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        let deadline = drain_deadline;
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics::counter!(CONNECTIONS_REFUSED).increment(1);
                    drop(tcp);
                    continue;
                };
                let (app, limits) = (app.clone(), limits.clone());
                tokio::spawn(async move {
                    metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
                    serve_connection(tcp, app, limits).await;
                    metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
                    drop(slot);
                });
            }
            _ = &mut shutdown, if drain_deadline.is_none() => {
                tracing::info!("shutdown signal: answering 503 to new requests, draining in-flight ones");
                state.begin_shutdown();
                drain_deadline = Some(tokio::time::Instant::now() + state.config.shutdown_grace);
            }
            _ = state.all_done(), if drain_deadline.is_some() => {
                tracing::info!("drained: every in-flight request finished");
                return Ok(());
            }
            _ = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::warn!(active = state.active_requests(), "grace period over; ending the requests still running");
                state.cut_streams();
                let _ = tokio::time::timeout(Duration::from_secs(2), state.all_done()).await;
                // Let the error events reach the sockets.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(());
            }
        }
    }
}
