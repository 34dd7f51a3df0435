//! OpenAI API shapes: requests as the server validates them, responses and stream
//! chunks as it writes them, and the error envelope.

mod error;
mod messages;
mod request;
mod response;
mod structured;
mod tokenize;
mod tools;
mod unsupported;

pub use error::{ApiError, ErrorBody, ErrorType};
pub use request::{
    ChatRequest, CompletionRequest, Message, MessageContent, Prompt, Role, SamplingFields,
    StreamOptions, TextPart,
};
pub use response::*;
pub use structured::Structured;
pub use tokenize::{
    apply_template_input, DetokenizeRequest, PromptResponse, TokenizeInput, TokenizeRequest,
    TokenizeResponse,
};
pub use tools::{FunctionCall, FunctionDef, Tool, ToolCall, ToolChoice, ToolFields};
pub use unsupported::{CHAT_ONLY_FIELDS, UNSUPPORTED_FIELDS};
