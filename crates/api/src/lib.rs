//! OpenAI API shapes: requests as the server validates them, responses and stream
//! chunks as it writes them, and the error envelope.

mod error;
mod request;
mod response;

pub use error::{ApiError, ErrorBody, ErrorType};
pub use request::{
    ChatRequest, CompletionRequest, Message, MessageContent, Prompt, Role, SamplingFields,
    StreamOptions, TextPart, UNSUPPORTED_FIELDS,
};
pub use response::*;
