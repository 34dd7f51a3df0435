//! A real `redis-server` on a free 127.0.0.1 port, without persistence, killed when
//! dropped; and a minimal RESP client over a plain socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis {
            port: super::free_port(),
            child: None,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory",
                "64mb",
                "--maxmemory-policy",
                "allkeys-lfu",
                // DEBUG SLEEP makes a slow Redis for the tests.
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let t = Instant::now();
        while self.try_cmd(&["PING"]).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A handle on a server another `Redis` started (for a second connection).
    pub fn attach(port: u16) -> Redis {
        Redis { port, child: None }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A fresh (empty) server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn cmd(&self, args: &[&[u8]]) -> Reply {
        self.try_cmd(args).expect("redis command")
    }

    fn try_cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> std::io::Result<Reply> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        // Long enough for a test's `DEBUG SLEEP`.
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        s.write_all(&out)?;
        read_reply(&mut BufReader::new(s))
    }

    /// Every key matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        match self.cmd(&[b"KEYS", pattern.as_bytes()]) {
            Reply::Array(a) => a
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(b),
                    _ => None,
                })
                .collect(),
            r => panic!("KEYS: {r:?}"),
        }
    }
}

fn read_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::other(format!("bad RESP line {line:?}"));
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut b = vec![0; n as usize + 2];
                r.read_exact(&mut b)?;
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut v = Vec::new();
            for _ in 0..n.max(0) {
                v.push(read_reply(r)?);
            }
            Reply::Array(v)
        }
        _ => return Err(bad()),
    })
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
