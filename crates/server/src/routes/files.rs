//! `/v1/files`: uploads of batch input files (multipart, as the openai SDK sends them),
//! their listing, metadata, content and deletion; batches' output and error files are
//! read here too.

use crate::error::HttpError;
use crate::state::AppState;
use api::{ApiError, ErrorType};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use batch::{FileObject, FilePurpose};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn runner(st: &AppState) -> Result<&Arc<batch::Runner>, ApiError> {
    st.batches().ok_or_else(|| {
        ApiError::new(
            404,
            ErrorType::NotFound,
            "the Files and Batch API is off on this server (--no-batch)",
        )
        .with_code("not_found")
    })
}

/// A store error as the API reports it.
pub(crate) fn store_error(e: batch::Error) -> ApiError {
    match e {
        batch::Error::NotFound { what, id } => {
            ApiError::new(404, ErrorType::NotFound, format!("no {what} with id {id}"))
                .with_code("not_found")
        }
        batch::Error::Invalid(m) => {
            ApiError::new(409, ErrorType::InvalidRequest, m).with_code("conflict")
        }
        other => ApiError::new(500, ErrorType::Server, other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> batch::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(500, ErrorType::Server, e.to_string()))?
        .map_err(store_error)
}

/// The upload's fields: `purpose` and `file`.
async fn multipart(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(String, String, Vec<u8>), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        ApiError::bad_request(
            "upload a file as multipart/form-data with fields 'purpose' and 'file'",
        )
        .with_code("invalid_content_type")
    })?;
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let (mut purpose, mut file) = (None, None);
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(bad)?),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl").to_string();
                file = Some((name, field.bytes().await.map_err(bad)?.to_vec()));
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown upload field '{other}' (purpose, file)"),
                )
                .with_code("unsupported_parameter"))
            }
            None => {}
        }
    }
    let purpose = purpose.ok_or_else(|| ApiError::invalid("purpose", "'purpose' is required"))?;
    let (name, bytes) = file.ok_or_else(|| ApiError::invalid("file", "'file' is required"))?;
    Ok((purpose, name, bytes))
}

/// Uploads a file (`purpose` must be `batch`).
pub async fn upload(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<FileObject>, HttpError> {
    let r = runner(&st)?.clone();
    let (parts, body) = req.into_parts();
    let limit = r.limits().max_bytes as usize;
    // Room for the multipart framing around the file itself.
    let bytes = crate::body::read_limited(body, limit + (64 << 10)).await?;
    let (purpose, name, data) = multipart(&parts.headers, bytes).await?;
    if FilePurpose::parse(&purpose) != Some(FilePurpose::Batch) {
        return Err(ApiError::invalid(
            "purpose",
            format!("purpose '{purpose}' is not supported here: upload batch input files with purpose 'batch'"),
        )
        .into());
    }
    if data.len() > limit {
        return Err(crate::body::too_large(limit).into());
    }
    let store = r.store().clone();
    let f = blocking(move || store.add_file(FilePurpose::Batch, &name, &data)).await?;
    tracing::info!(file = %f.id, bytes = f.bytes, "file uploaded");
    Ok(Json(f))
}

#[derive(Deserialize)]
pub struct ListQuery {
    purpose: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
    order: Option<String>,
}

/// A page of a list in OpenAI's cursor shape.
pub(crate) fn page<T: serde::Serialize>(
    items: Vec<T>,
    more: bool,
    id: impl Fn(&T) -> &str,
) -> Value {
    json!({
        "object": "list",
        "first_id": items.first().map(&id),
        "last_id": items.last().map(&id),
        "has_more": more,
        "data": items,
    })
}

pub(crate) fn limit_of(limit: Option<usize>, most: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(20.min(most)),
        Some(l) if (1..=most).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::invalid(
            "limit",
            format!("limit {l} is outside 1..={most}"),
        )),
    }
}

pub async fn list(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, HttpError> {
    let r = runner(&st)?;
    let purpose = match q.purpose.as_deref() {
        None => None,
        Some(p) => Some(FilePurpose::parse(p).ok_or_else(|| {
            ApiError::invalid(
                "purpose",
                format!("unknown purpose '{p}' (batch, batch_output)"),
            )
        })?),
    };
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::invalid(
                "order",
                format!("order '{o}' is neither 'asc' nor 'desc'"),
            )
            .into())
        }
    };
    let limit = limit_of(q.limit, 10_000)?;
    let store = r.store().clone();
    let after = q.after.clone();
    let (files, more) =
        blocking(move || store.files(purpose, after.as_deref(), limit, ascending)).await?;
    Ok(Json(page(files, more, |f| f.id.as_str())))
}

pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, HttpError> {
    let store = runner(&st)?.store().clone();
    Ok(Json(blocking(move || store.file(&id)).await?))
}

/// The file's bytes, streamed.
pub async fn content(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let store = runner(&st)?.store().clone();
    let path = blocking(move || store.file_path(&id)).await?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            500,
            ErrorType::Server,
            format!("reading the file failed: {e}"),
        )
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

pub async fn delete(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let store = runner(&st)?.store().clone();
    let f = blocking(move || store.delete_file(&id)).await?;
    Ok(Json(json!({"id": f.id, "object": "file", "deleted": true})))
}
