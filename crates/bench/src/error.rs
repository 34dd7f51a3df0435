#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid option: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("http client: {0}")]
    Http(String),
    #[error("chart: {0}")]
    Chart(String),
}

pub type Result<T> = std::result::Result<T, Error>;
