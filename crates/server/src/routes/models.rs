use crate::error::HttpError;
use crate::state::AppState;
use api::{ApiError, ErrorType, ModelCard, ModelList};
use axum::extract::{Path, State};
use axum::Json;
use std::sync::Arc;

fn card(st: &AppState) -> ModelCard {
    ModelCard {
        id: st.config.model_id.clone(),
        object: Default::default(),
        created: st.created,
        owned_by: "autoglm".into(),
        max_model_len: st.loaded().map(|l| l.engine.context_length()),
    }
}

/// The served model.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, body = ModelList), (status = 401, body = api::ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn list(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: Default::default(),
        data: vec![card(&st)],
    })
}

/// One model by id.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models",
    params(("id" = String, Path, description = "The model id")),
    responses((status = 200, body = ModelCard), (status = 401, body = api::ErrorBody), (status = 404, body = api::ErrorBody)),
    security((), ("bearer" = [])))]
pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, HttpError> {
    if id == st.config.model_id {
        Ok(Json(card(&st)))
    } else {
        Err(HttpError(
            ApiError::new(
                404,
                ErrorType::NotFound,
                format!("the model '{id}' does not exist"),
            )
            .with_code("model_not_found"),
        ))
    }
}
