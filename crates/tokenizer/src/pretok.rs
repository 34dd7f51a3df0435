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

const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's pattern without its final `\s+` alternative, as llama.cpp's Falcon set has it.
const GPT2_NO_TRAILING: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

fn split(pattern: &str) -> Result<PreTokenizerWrapper> {
    let s = Split::new(
        SplitPattern::Regex(pattern.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Backend(e.to_string()))?;
    Ok(s.into())
}

/// Whether a word that is itself a token is taken whole, before any merge (Llama 3's
/// tokenizer does this; llama.cpp sets `ignore_merges` for the same pre-tokenizers). It
/// differs from merging where the merges would not reach the word ("Việt").
pub fn ignores_merges(pre: &str) -> bool {
    matches!(pre, "llama-bpe" | "llama3" | "llama-v3" | "glm4")
}

/// The `tokenizer.ggml.pre` values [`for_pre`] knows.
pub const KNOWN: &[&str] = &[
    "smollm",
    "gpt-2",
    "gpt2",
    "default",
    "llama-bpe",
    "llama3",
    "llama-v3",
    "chatglm-bpe",
    "glm4",
    "qwen2",
    "qwen35",
    "starcoder",
    "refact",
    "command-r",
    "mpt",
    "falcon",
    "deepseek-coder",
    "deepseek-llm",
];

pub fn for_pre(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |regex: bool| -> PreTokenizerWrapper { ByteLevel::new(false, false, regex).into() };
    Ok(match pre {
        // SmolLM: every digit on its own, then the GPT-2 pattern.
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into(),
        "gpt-2" | "gpt2" | "default" => byte_level(true),
        // GLM-4's set is Llama 3's with the contractions spelled case by case.
        "llama-bpe" | "llama3" | "llama-v3" | "chatglm-bpe" | "glm4" => {
            Sequence::new(vec![split(LLAMA3)?, byte_level(false)]).into()
        }
        "qwen2" => Sequence::new(vec![split(QWEN2)?, byte_level(false)]).into(),
        "qwen35" => Sequence::new(vec![split(QWEN35)?, byte_level(false)]).into(),
        // Code models that split every digit, then GPT-2's pattern (as SmolLM).
        "starcoder" | "refact" | "command-r" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level(true)]).into()
        }
        "mpt" => byte_level(true),
        // Punctuation runs, then GPT-2's pattern, then digits in threes.
        "falcon" => Sequence::new(vec![
            split(r"[\p{P}\$\+<=>\^~\|`]+")?,
            split(GPT2_NO_TRAILING)?,
            split("[0-9][0-9][0-9]")?,
            byte_level(false),
        ])
        .into(),
        // DeepSeek LLM's own letter, punctuation, CJK and digit classes (llama.cpp's set).
        "deepseek-llm" => Sequence::new(vec![
            split(r"[\r\n]")?,
            split(r#"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"#)?,
            split(r#"\s?[!-/:-~！-／：-～‘-‟　-。]+"#)?,
            split(r#"\s+$"#)?,
            split(r#"[一-龥ࠀ-一가-퟿]+"#)?,
            split(r#"\p{N}+"#)?,
            byte_level(false),
        ])
        .into(),
        "deepseek-coder" => Sequence::new(vec![
            split(r"[\r\n]")?,
            split(r"\s?\p{L}+")?,
            split(r"\s?\p{P}+")?,
            split("[一-龥ࠀ-一가-퟿]+")?,
            split(r"\p{N}")?,
            byte_level(false),
        ])
        .into(),
        other => return Err(Error::UnknownPre(other.to_string())),
    })
}
