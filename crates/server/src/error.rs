use api::{ApiError, ErrorType};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::SubmitError;

/// An [`ApiError`] as an HTTP response.
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(status = e.status, message = %e.message, "request failed");
        } else {
            tracing::info!(status = e.status, message = %e.message, param = ?e.param, "request refused");
        }
        let mut resp = (status, axum::Json(e.body())).into_response();
        if let Some(s) = e.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

pub fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull(_) => {
            let mut a = ApiError::new(
                429,
                ErrorType::RateLimit,
                format!("server overloaded: {e}; retry shortly"),
            )
            .with_code("queue_full");
            a.retry_after = Some(1);
            a
        }
        SubmitError::ShuttingDown => {
            let mut a = ApiError::new(503, ErrorType::Unavailable, "the server is shutting down")
                .with_code("shutting_down");
            a.retry_after = Some(5);
            a
        }
        SubmitError::TooLong { .. } | SubmitError::ExceedsCache { .. } => {
            ApiError::invalid("max_tokens", e.to_string()).with_code("context_length_exceeded")
        }
        SubmitError::EmptyPrompt => ApiError::invalid("prompt", e.to_string()),
        SubmitError::BadToken(_) => ApiError::invalid("prompt", e.to_string()),
        SubmitError::BadBiasToken(_) => ApiError::invalid("logit_bias", e.to_string()),
        SubmitError::EngineFailed(m) => engine_failed(&m),
    }
}

/// The engine loop has died: nothing will run until the process is restarted (the
/// supervisor's job), so clients are told to go elsewhere.
pub fn engine_failed(message: &str) -> ApiError {
    ApiError::new(
        503,
        ErrorType::Unavailable,
        format!("the inference engine has failed and this server cannot generate until it is restarted: {message}"),
    )
    .with_code("engine_failed")
}

/// A stream or request still running when the shutdown grace period ran out.
pub fn cut_by_shutdown() -> ApiError {
    ApiError::new(
        503,
        ErrorType::Unavailable,
        "the server shut down before this request finished (grace period over)",
    )
    .with_code("shutting_down")
}

pub fn not_ready() -> ApiError {
    let mut a = ApiError::new(503, ErrorType::Unavailable, "the model is still loading")
        .with_code("model_loading");
    a.retry_after = Some(2);
    a
}
