//! Compressed request bodies: `Content-Encoding: gzip` or `zstd` (agents send long
//! conversations). The body is decoded as it streams, so the route's body limit
//! (`body::read_limited`) counts decompressed bytes and a bomb stops at the limit; zstd's
//! window is capped at the 8 MiB that RFC 9659 sets for HTTP, so a frame cannot make the
//! decoder allocate the 128 MiB window zstd itself would accept. Other encodings: 415.

use crate::error::HttpError;
use api::{ApiError, ErrorType};
use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use async_compression::zstd::DParameter;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// RFC 9659: a zstd content coding's window is at most 8 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

#[derive(Clone, Copy, Debug)]
enum Coding {
    Gzip,
    Zstd,
}

fn coding(value: &str) -> Result<Option<Coding>, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "zstd" => Ok(Some(Coding::Zstd)),
        other => Err(ApiError::new(
            415,
            ErrorType::InvalidRequest,
            format!("unsupported Content-Encoding '{other}'; send identity, gzip or zstd"),
        )
        .with_code("unsupported_content_encoding")),
    }
}

pub async fn decode_request_body(req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return next.run(req).await;
    };
    let which = match coding(value.to_str().unwrap_or("?")) {
        Ok(Some(c)) => c,
        Ok(None) => return next.run(req).await,
        Err(e) => return HttpError(e).into_response(),
    };
    let (mut parts, body) = req.into_parts();
    let raw = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let decoded: std::pin::Pin<Box<dyn AsyncRead + Send>> = match which {
        Coding::Gzip => Box::pin(GzipDecoder::new(raw)),
        Coding::Zstd => Box::pin(ZstdDecoder::with_params(
            raw,
            &[DParameter::window_log_max(ZSTD_WINDOW_LOG_MAX)],
        )),
    };
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Body::from_stream(ReaderStream::new(decoded));
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_matched_case_blind_and_others_refused() {
        assert!(matches!(coding(" GZIP "), Ok(Some(Coding::Gzip))));
        assert!(matches!(coding("zstd"), Ok(Some(Coding::Zstd))));
        assert!(matches!(coding("identity"), Ok(None)));
        assert_eq!(coding("br").unwrap_err().status, 415);
    }
}
