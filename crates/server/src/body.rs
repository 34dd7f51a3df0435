//! Reading a request body: at most `limit` bytes (after decompression), with the rest of
//! an oversized body read and discarded (bounded in bytes and time) before the 413 is
//! sent, so that the client is listening for it: an HTTP/2 client that is still sending
//! when the server answers and resets the stream often reports the reset, not the 413.

use api::{ApiError, ErrorType};
use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use std::time::Duration;

/// How much of an oversized body is drained before answering, at most.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

fn read_error(e: axum::Error) -> ApiError {
    let timed_out = std::error::Error::source(&e).is_some_and(|s| {
        s.is::<tower_http::timeout::TimeoutError>() || s.to_string().contains("timed out")
    }) || e.to_string().contains("timed out");
    if timed_out {
        ApiError::new(
            408,
            ErrorType::InvalidRequest,
            "the request body did not arrive in time",
        )
        .with_code("body_timeout")
    } else {
        ApiError::bad_request(format!("could not read the request body: {e}")).with_code("bad_body")
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        413,
        ErrorType::InvalidRequest,
        format!("request body too large (the limit is {limit} bytes)"),
    )
    .with_code("body_too_large")
}

pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(read_error)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body, buf.len() + data.len()).await;
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

async fn drain(mut body: Body, mut seen: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen < DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

/// The body as JSON: 413 when too large, 400 for malformed JSON.
pub async fn read_json(body: Body, limit: usize) -> Result<serde_json::Value, ApiError> {
    let bytes = read_limited(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("invalid JSON in request body: {e}"))
            .with_code("invalid_json")
    })
}
