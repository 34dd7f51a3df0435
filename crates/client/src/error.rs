use std::time::Duration;

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Establishing the TCP connection.
    Connect,
    /// Waiting for the response's status line and headers.
    FirstByte,
    /// Waiting for the next chunk of a stream.
    Idle,
    /// The whole call, retries included.
    Total,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("{phase:?} timeout after {after:?}")]
    Timeout { phase: Phase, after: Duration },
    /// The connection could not be made, or broke before any response byte.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The server answered with an error status (the OpenAI-shaped body when it sent one).
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        body: Option<Box<api::ErrorBody>>,
        /// The server's `Retry-After` / `retry-after-ms`, when given.
        retry_after: Option<Duration>,
    },
    /// A stream that had started broke, or carried an error event. Never retried.
    #[error("stream failed after it started: {0}")]
    Stream(String),
    /// The server ended a started stream with an error event (`data: {"error": ...}`).
    #[error("the server reported an error mid-stream: {0}")]
    StreamEvent(String),
    #[error("the response could not be read: {0}")]
    Decode(String),
    #[error("invalid client configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
