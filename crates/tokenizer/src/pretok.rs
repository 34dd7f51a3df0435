//! Pre-tokenizers by `tokenizer.ggml.pre`, matching llama.cpp's regex sets.

use crate::{Error, Result};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split(pattern: &str) -> Result<PreTokenizerWrapper> {
    let s = Split::new(
        SplitPattern::Regex(pattern.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Backend(e.to_string()))?;
    Ok(s.into())
}

pub fn for_pre(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |regex: bool| -> PreTokenizerWrapper { ByteLevel::new(false, false, regex).into() };
    Ok(match pre {
        // SmolLM: every digit on its own, then the GPT-2 pattern.
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        "llama-bpe" | "llama3" => Sequence::new(vec![split(LLAMA3)?, byte_level(false)]).into(),
        "qwen2" => Sequence::new(vec![split(QWEN2)?, byte_level(false)]).into(),
        other => return Err(Error::UnknownPre(other.to_string())),
    })
}
