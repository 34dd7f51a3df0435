//! `/v1/batches`: create a batch from an uploaded input file, read one, list them
//! (newest first, `after` cursor), cancel one. The runner does the rest.

use super::files::{limit_of, page, runner, store_error};
use crate::error::HttpError;
use crate::state::AppState;
use api::{ApiError, ErrorType};
use axum::extract::{Path, Query, Request, State};
use axum::Json;
use batch::{Batch, BatchStatus, Endpoint, FilePurpose, NewBatch};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// `completion_window`: OpenAI's `24h`, or any other duration (`90m`, `2h`, `30s`).
fn window_secs(w: &str) -> Result<u64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "completion_window",
            format!("completion_window '{w}' is not a duration such as '24h'"),
        )
    };
    let d = humantime::parse_duration(w).map_err(|_| bad())?;
    if d.as_secs() == 0 {
        return Err(bad());
    }
    Ok(d.as_secs())
}

/// OpenAI's metadata: at most 16 pairs, keys up to 64 characters, string values up to
/// 512.
fn check_metadata(m: &Value) -> Result<(), ApiError> {
    let bad = |msg: &str| ApiError::invalid("metadata", msg.to_string());
    let o = m
        .as_object()
        .ok_or_else(|| bad("metadata must be an object of strings"))?;
    if o.len() > 16 {
        return Err(bad("metadata holds at most 16 pairs"));
    }
    for (k, v) in o {
        let v = v
            .as_str()
            .ok_or_else(|| bad("metadata values must be strings"))?;
        if k.chars().count() > 64 || v.chars().count() > 512 {
            return Err(bad(
                "metadata keys are at most 64 characters, values at most 512",
            ));
        }
    }
    Ok(())
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Batch>, HttpError> {
    let r = runner(&st)?.clone();
    let body = crate::body::read_json(req.into_body(), st.config.max_body_bytes).await?;
    let o = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    for k in o.keys() {
        if !matches!(
            k.as_str(),
            "input_file_id" | "endpoint" | "completion_window" | "metadata"
        ) {
            return Err(ApiError::invalid(
                k,
                format!("'{k}' is not supported by this server's batches (input_file_id, endpoint, completion_window, metadata)"),
            )
            .with_code("unsupported_parameter")
            .into());
        }
    }
    let str_field = |k: &str| -> Result<String, ApiError> {
        o.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(k, format!("'{k}' is required (a string)")))
    };
    let input_file_id = str_field("input_file_id")?;
    let endpoint_s = str_field("endpoint")?;
    let endpoint = Endpoint::parse(&endpoint_s).ok_or_else(|| {
        ApiError::invalid(
            "endpoint",
            format!(
                "endpoint '{endpoint_s}' is not supported (/v1/chat/completions, /v1/completions)"
            ),
        )
    })?;
    let completion_window = str_field("completion_window")?;
    let window = window_secs(&completion_window)?;
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => {
            check_metadata(m)?;
            Some(m.clone())
        }
    };
    let store = r.store().clone();
    let b = tokio::task::spawn_blocking(move || -> batch::Result<Batch> {
        let f = store.file(&input_file_id)?;
        if f.purpose != FilePurpose::Batch {
            return Err(batch::Error::Invalid(format!(
                "file {input_file_id} has purpose '{}', not 'batch'",
                f.purpose.as_str()
            )));
        }
        store.create_batch(NewBatch {
            endpoint,
            input_file_id,
            completion_window,
            window_secs: window,
            metadata,
        })
    })
    .await
    .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?
    .map_err(|e| match e {
        batch::Error::Invalid(m) => ApiError::invalid("input_file_id", m),
        batch::Error::NotFound { id, .. } => {
            ApiError::invalid("input_file_id", format!("no file with id {id}"))
        }
        other => store_error(other),
    })?;
    tracing::info!(batch = %b.id, input = %b.input_file_id, endpoint = b.endpoint.path(), "batch created");
    r.wake();
    Ok(Json(b))
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Batch>, HttpError> {
    let store = runner(&st)?.store().clone();
    let b = tokio::task::spawn_blocking(move || store.batch(&id))
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?
        .map_err(store_error)?;
    Ok(Json(b))
}

#[derive(Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, HttpError> {
    let store = runner(&st)?.store().clone();
    let limit = limit_of(q.limit, 100)?;
    let (items, more) =
        tokio::task::spawn_blocking(move || store.batches(q.after.as_deref(), limit))
            .await
            .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?
            .map_err(store_error)?;
    Ok(Json(page(items, more, |b| b.id.as_str())))
}

pub async fn cancel(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Batch>, HttpError> {
    let r = runner(&st)?.clone();
    let b = tokio::task::spawn_blocking(move || r.cancel(&id))
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?
        .map_err(store_error)?;
    if b.status.is_terminal() {
        return Err(ApiError::new(
            409,
            ErrorType::InvalidRequest,
            format!("batch {} has already ended ({:?})", b.id, b.status).to_lowercase(),
        )
        .with_code("batch_not_cancellable")
        .into());
    }
    debug_assert!(matches!(b.status, BatchStatus::Cancelling));
    Ok(Json(b))
}
