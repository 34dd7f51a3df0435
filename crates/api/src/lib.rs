//! OpenAI API shapes: requests as the server validates them, responses and stream
//! chunks as it writes them, and the error envelope.

mod error;
mod request;
mod response;
mod structured;
mod unsupported;

pub use error::{ApiError, ErrorBody, ErrorType};
pub use request::{
    ChatRequest, CompletionRequest, Message, MessageContent, Prompt, Role, SamplingFields,
    StreamOptions, TextPart,
};
pub use response::*;
pub use structured::Structured;
pub use unsupported::UNSUPPORTED_FIELDS;
