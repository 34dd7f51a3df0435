//! `autoglm chaos-proxy`: a TCP proxy on 127.0.0.1 that injects the faults a bad network
//! and a struggling server produce — added latency with jitter, connections reset on
//! accept, connections reset after N bytes of response, and (HTTP/1.1) error statuses
//! answered in the upstream's place — and logs every connection and request as a JSON
//! line, so tests and demos can count attempts and time them.

use anyhow::{Context, Result};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address to accept on, e.g. 127.0.0.1:9000.
    #[arg(long)]
    listen: String,
    /// Where to forward, e.g. 127.0.0.1:8000.
    #[arg(long)]
    upstream: String,
    /// Latency added to every chunk, each direction (pipelined: throughput is kept).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Uniform extra latency in [0, N] ms per chunk.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Fraction of new connections reset at once (the client sees a reset before any byte).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Reset a connection after this many response bytes (a stream broken mid-way).
    #[arg(long)]
    reset_after_bytes: Option<u64>,
    /// HTTP status to answer in the upstream's place (HTTP/1.1; each request decided
    /// alone, forwarded requests get `Connection: close`).
    #[arg(long)]
    status: Option<u16>,
    /// Fraction of requests answered with --status.
    #[arg(long, default_value_t = 1.0)]
    status_rate: f64,
    /// Gzip every request body that is not encoded yet (`Content-Encoding: gzip`), as a
    /// compressing gateway would: shows that a client needs no change for the server to
    /// take compressed bodies (HTTP/1.1, like --status).
    #[arg(long)]
    gzip_requests: bool,
    /// Read each HTTP/1.1 request and log it (line, attempt header, encodings, size) before
    /// forwarding it on a connection of its own; implied by --status and --gzip-requests.
    #[arg(long)]
    log_requests: bool,
    /// `Retry-After` value sent with injected statuses.
    #[arg(long)]
    retry_after: Option<String>,
    /// `retry-after-ms` value sent with injected statuses (OpenAI's SDKs read it).
    #[arg(long)]
    retry_after_ms: Option<u64>,
    /// Seed of the fault decisions (the same seed, the same faults in the same order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// JSON-lines log of connections, requests and faults (default: stderr).
    #[arg(long)]
    log: Option<std::path::PathBuf>,
}

struct Chaos {
    args: Args,
    rng: Mutex<u64>,
    conns: AtomicU64,
    started: Instant,
    log: Mutex<Box<dyn Write + Send>>,
}

impl Chaos {
    fn unit(&self) -> f64 {
        let mut x = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn event(&self, conn: u64, what: &str, extra: serde_json::Value) {
        let mut line = serde_json::json!({
            "ms": self.started.elapsed().as_secs_f64() * 1e3,
            "conn": conn,
            "event": what,
        });
        if let (Some(l), serde_json::Value::Object(e)) = (line.as_object_mut(), extra) {
            l.extend(e);
        }
        let mut w = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(w, "{line}");
        let _ = w.flush();
    }

    fn delay(&self) -> Duration {
        let jitter = (self.args.jitter_ms as f64 * self.unit()) as u64;
        Duration::from_millis(self.args.delay_ms + jitter)
    }
}

pub fn run(args: Args) -> Result<()> {
    let log: Box<dyn Write + Send> = match &args.log {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let chaos = Arc::new(Chaos {
        rng: Mutex::new(args.seed | 1),
        args,
        conns: AtomicU64::new(0),
        started: Instant::now(),
        log: Mutex::new(log),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(&chaos.args.listen)
            .await
            .with_context(|| format!("listening on {}", chaos.args.listen))?;
        chaos.event(
            0,
            "listening",
            serde_json::json!({"addr": chaos.args.listen}),
        );
        loop {
            let (client, _) = l.accept().await?;
            let n = chaos.conns.fetch_add(1, Ordering::Relaxed) + 1;
            let c = chaos.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(c.clone(), client, n).await {
                    c.event(n, "error", serde_json::json!({"error": e.to_string()}));
                }
            });
        }
    })
}

fn reset(s: TcpStream) {
    // SO_LINGER 0: closing sends RST, not FIN.
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

async fn connection(c: Arc<Chaos>, client: TcpStream, n: u64) -> Result<()> {
    client.set_nodelay(true)?;
    c.event(n, "conn", serde_json::json!({}));
    if c.args.drop_rate > 0.0 && c.unit() < c.args.drop_rate {
        c.event(n, "drop", serde_json::json!({}));
        reset(client);
        return Ok(());
    }
    let mut client = client;
    let first = if c.args.status.is_some() || c.args.gzip_requests || c.args.log_requests {
        // HTTP level: read the request, then answer it here or forward it alone.
        let Some(mut req) = read_request(&mut client).await? else {
            return Ok(());
        };
        let sent_bytes = req.body.len();
        if c.args.gzip_requests {
            req = req.gzipped()?;
        }
        let attempt = header(&req.head, "x-attempt");
        c.event(
            n,
            "request",
            serde_json::json!({
                "line": req.line(),
                "attempt": attempt,
                "content_encoding": header(&req.head, "content-encoding"),
                "accept_encoding": header(&req.head, "accept-encoding"),
                "sent_bytes": sent_bytes,
                "body_bytes": req.body.len(),
            }),
        );
        if c.args.status.is_some() && c.unit() < c.args.status_rate {
            let code = c.args.status.unwrap_or(503);
            c.event(n, "inject", serde_json::json!({"status": code}));
            client
                .write_all(
                    injected(code, c.args.retry_after.as_deref(), c.args.retry_after_ms).as_bytes(),
                )
                .await?;
            let _ = client.shutdown().await;
            return Ok(());
        }
        req.closing()
    } else {
        Vec::new()
    };
    let upstream = TcpStream::connect(&c.args.upstream).await?;
    upstream.set_nodelay(true)?;
    pipe_both(c, client, upstream, n, first).await
}

fn injected(code: u16, retry_after: Option<&str>, retry_after_ms: Option<u64>) -> String {
    let body = serde_json::json!({"error": {"message": format!("injected by autoglm chaos-proxy: {code}"), "type": "server_error", "param": null, "code": "chaos"}}).to_string();
    let mut waits = retry_after
        .map(|v| format!("Retry-After: {v}\r\n"))
        .unwrap_or_default();
    if let Some(ms) = retry_after_ms {
        waits.push_str(&format!("retry-after-ms: {ms}\r\n"));
    }
    format!("HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{waits}Connection: close\r\n\r\n{body}", body.len())
}

struct RawRequest {
    head: String,
    body: Vec<u8>,
}

impl RawRequest {
    fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    /// The request with its body gzipped, unless it is empty or already encoded.
    fn gzipped(self) -> Result<RawRequest> {
        if self.body.is_empty() || header(&self.head, "content-encoding").is_some() {
            return Ok(self);
        }
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&self.body)?;
        let body = z.finish()?;
        let mut head: Vec<&str> = self
            .head
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
            .collect();
        let length = format!("Content-Length: {}", body.len());
        head.push(&length);
        head.push("Content-Encoding: gzip");
        Ok(RawRequest {
            head: head.join("\r\n"),
            body,
        })
    }

    /// The request with `Connection: close`, so its connection carries it alone and every
    /// request meets the injector.
    fn closing(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, l) in self.head.split("\r\n").enumerate() {
            if i > 0 && l.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        let mut b = out.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// One HTTP/1.1 request with a Content-Length body (what OpenAI clients send).
async fn read_request(s: &mut TcpStream) -> Result<Option<RawRequest>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let k = s.read(&mut chunk).await?;
        if k == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..k]);
        anyhow::ensure!(buf.len() < 1 << 20, "request head over 1 MiB");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let k = s.read(&mut chunk).await?;
        if k == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..k]);
    }
    Ok(Some(RawRequest { head, body }))
}

/// Forwards both directions until the upstream has closed and everything reached the
/// client (or the client is gone). Each chunk is released `--delay-ms` (+ jitter) after it
/// arrived, in order; `--reset-after-bytes` of response resets both sides.
async fn pipe_both(
    c: Arc<Chaos>,
    mut client: TcpStream,
    mut upstream: TcpStream,
    n: u64,
    first: Vec<u8>,
) -> Result<()> {
    use std::collections::VecDeque;
    let limit = c.args.reset_after_bytes;
    let mut cut = false;
    {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let mut to_up: VecDeque<(tokio::time::Instant, Vec<u8>)> = VecDeque::new();
        let mut to_client: VecDeque<(tokio::time::Instant, Vec<u8>)> = VecDeque::new();
        if !first.is_empty() {
            to_up.push_back((tokio::time::Instant::now() + c.delay(), first));
        }
        let (mut cbuf, mut ubuf) = (vec![0u8; 16384], vec![0u8; 16384]);
        let (mut c_open, mut u_open, mut up_shut) = (true, true, false);
        let mut sent = 0u64;
        let release = |q: &VecDeque<(tokio::time::Instant, Vec<u8>)>, c: &Chaos| {
            // Jitter never reorders: a chunk leaves no earlier than the one before it.
            let at = tokio::time::Instant::now() + c.delay();
            q.back().map_or(at, |b| b.0.max(at))
        };
        loop {
            if !u_open && to_client.is_empty() {
                break;
            }
            if !c_open && to_up.is_empty() && !up_shut {
                let _ = uw.shutdown().await;
                up_shut = true;
            }
            let next_up = to_up.front().map(|x| x.0);
            let next_client = to_client.front().map(|x| x.0);
            tokio::select! {
                r = cr.read(&mut cbuf), if c_open => match r {
                    Ok(0) | Err(_) => c_open = false,
                    Ok(k) => {
                        let at = release(&to_up, &c);
                        to_up.push_back((at, cbuf[..k].to_vec()));
                    }
                },
                r = ur.read(&mut ubuf), if u_open => match r {
                    Ok(0) | Err(_) => u_open = false,
                    Ok(k) => {
                        let at = release(&to_client, &c);
                        to_client.push_back((at, ubuf[..k].to_vec()));
                    }
                },
                _ = tokio::time::sleep_until(next_up.unwrap_or_else(tokio::time::Instant::now)), if next_up.is_some() => {
                    if let Some((_, b)) = to_up.pop_front() {
                        if uw.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_client.unwrap_or_else(tokio::time::Instant::now)), if next_client.is_some() => {
                    if let Some((_, mut b)) = to_client.pop_front() {
                        if let Some(lim) = limit {
                            if sent + b.len() as u64 >= lim {
                                b.truncate((lim - sent) as usize);
                                let _ = cw.write_all(&b).await;
                                cut = true;
                                break;
                            }
                        }
                        sent += b.len() as u64;
                        if cw.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
    }
    if cut {
        c.event(n, "reset", serde_json::json!({"after_bytes": limit}));
        reset(client);
        reset(upstream);
    }
    Ok(())
}
