//! Tokenization exactly as llama.cpp does it, built from a GGUF file's metadata, plus
//! incremental detokenization and chat templates.

mod bpe;
mod byte_level;
mod chat;
mod detok;
mod error;
mod pieces;
mod pretok;
mod pyjson;
mod special;
mod spm;
mod vocab;

pub use chat::{ChatMessage, ChatTemplate};
pub use detok::Detokenizer;
pub use error::{Error, Result};
pub use vocab::{TokenType, Tokenizer};
