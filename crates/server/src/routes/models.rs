use crate::error::HttpError;
use crate::state::AppState;
use api::{ApiError, ErrorType, ModelCard, ModelList};
use axum::extract::{Path, State};
use axum::Json;
use std::sync::Arc;

fn card(st: &AppState) -> ModelCard {
    ModelCard {
        id: st.config.model_id.clone(),
        object: "model".into(),
        created: st.created,
        owned_by: "autoglm".into(),
        max_model_len: st.loaded().map(|l| l.engine.context_length()),
    }
}

pub async fn list(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![card(&st)],
    })
}

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
