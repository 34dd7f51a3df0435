#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("batch store (SQLite): {0}")]
    Db(#[from] rusqlite::Error),
    #[error("batch store (files): {0}")]
    Io(#[from] std::io::Error),
    #[error("batch store: {0}")]
    Corrupt(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
