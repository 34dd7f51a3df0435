#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GGUF: {0}")]
    Gguf(#[from] gguf::Error),
    #[error("unsupported tokenizer model {0:?} (supported: gpt2 = byte-level BPE, llama = SentencePiece)")]
    UnsupportedModel(String),
    #[error("unknown pre-tokenizer {0:?} in tokenizer.ggml.pre (supported: {known})", known = crate::pretok::KNOWN.join(", "))]
    UnknownPre(String),
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    #[error("tokenizer: {0}")]
    Backend(String),
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("chat template: {0}")]
    Template(String),
}

pub type Result<T> = std::result::Result<T, Error>;
