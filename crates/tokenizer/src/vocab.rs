use crate::bpe::BpeEncoder;
use crate::byte_level::token_bytes;
use crate::pieces::Pieces;
use crate::special::SpecialToken;
use crate::spm::{spm_token_bytes, SpmEncoder};
use crate::{Error, Result};
use gguf::GgufFile;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_id(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Texts llama.cpp treats as end-of-generation when the vocabulary has them as control tokens.
/// Texts llama.cpp treats as end-of-generation, whatever the vocabulary's type for them
/// (it turns them into control tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// Fill-in-the-middle and end-of-turn markers llama.cpp also makes control tokens when
/// the vocabulary forgot to (so special-token parsing matches them, and plain text
/// never produces them).
const CONTROL_LOOKING_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\u{ff5c}fim\u{2581}begin\u{ff5c}>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\u{ff5c}fim\u{2581}hole\u{ff5c}>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\u{ff5c}fim\u{2581}end\u{ff5c}>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// llama.cpp's type overrides: every end-of-generation or FIM marker text is a control
/// token (for the id its text maps to, the last one with that text).
fn control_looking_overrides(tokens: &[String], types: &mut [TokenType]) {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        last.insert(t.as_str(), i);
    }
    for text in EOG_TEXTS.iter().chain(CONTROL_LOOKING_TEXTS) {
        if let Some(&i) = last.get(text) {
            types[i] = TokenType::Control;
        }
    }
}

/// The tokenization algorithm the vocabulary's `tokenizer.ggml.model` names.
enum Encoder {
    Bpe(Box<BpeEncoder>),
    Spm(Box<SpmEncoder>),
}

pub struct Tokenizer {
    encoder: Encoder,
    tokens: Pieces,
    types: Vec<TokenType>,
    bytes: Pieces,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    eog: Vec<u32>,
    chat_template: Option<String>,
}

fn opt_id(f: &GgufFile, key: &str, n: usize) -> Option<u32> {
    f.get(key)
        .and_then(|v| v.as_u64())
        .filter(|&v| (v as usize) < n)
        .map(|v| v as u32)
}

impl Tokenizer {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let model = f.get_str("tokenizer.ggml.model")?;
        let is_spm = match model {
            "gpt2" => false,
            "llama" => true,
            other => return Err(Error::UnsupportedModel(other.to_string())),
        };
        let pre = f
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let tokens: Vec<String> = f
            .get_array("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Metadata("tokenizer.ggml.tokens holds a non-string".into()))?;
        let n = tokens.len();
        let types: Vec<TokenType> = match f.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| Error::Metadata("token_type is not an array".into()))?;
                if arr.len() != n {
                    return Err(Error::Metadata(format!(
                        "{} token types for {n} tokens",
                        arr.len()
                    )));
                }
                arr.iter()
                    .map(|t| TokenType::from_id(t.as_i64().unwrap_or(1)))
                    .collect()
            }
            None => vec![TokenType::Normal; n],
        };
        let mut types = types;
        control_looking_overrides(&tokens, &mut types);
        let bool_key = |k: &str| f.get(k).and_then(|v| v.as_bool());
        // llama.cpp's defaults where the file is silent: SentencePiece vocabularies start
        // with BOS (id 1, EOS 2), so do Llama 3's and Mistral's BPE ones.
        let (default_bos, default_eos, default_add_bos) = if is_spm {
            (Some(1), Some(2), true)
        } else {
            (
                None,
                None,
                matches!(pre, "llama-bpe" | "llama3" | "llama-v3" | "tekken"),
            )
        };
        let valid = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let bos = opt_id(f, "tokenizer.ggml.bos_token_id", n).or(valid(default_bos));
        let eos = opt_id(f, "tokenizer.ggml.eos_token_id", n).or(valid(default_eos));
        let (encoder, bytes) = if is_spm {
            let scores: Vec<f32> = match f.get("tokenizer.ggml.scores") {
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| Error::Metadata("scores is not an array".into()))?
                    .iter()
                    .map(|s| s.as_f64().unwrap_or(0.0) as f32)
                    .collect(),
                None => vec![0.0; n],
            };
            let name = f
                .get("general.name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_lowercase();
            let specials = special_tokens(&tokens, &types, &name);
            let unk = opt_id(f, "tokenizer.ggml.unknown_token_id", n).or(valid(Some(0)));
            let enc = SpmEncoder::new(
                &tokens,
                &types,
                scores,
                unk,
                specials,
                bool_key("tokenizer.ggml.add_space_prefix").unwrap_or(true),
            );
            let bytes: Vec<Vec<u8>> = tokens
                .iter()
                .zip(&types)
                .map(|(t, &ty)| spm_token_bytes(t, ty))
                .collect();
            (Encoder::Spm(Box::new(enc)), Pieces::new(bytes))
        } else {
            let enc = BpeEncoder::from_gguf(f, pre, &tokens, &types)?;
            let bytes = Pieces::new(tokens.iter().zip(&types).map(|(t, ty)| match ty {
                TokenType::Normal | TokenType::Byte => {
                    token_bytes(t).unwrap_or_else(|| t.as_bytes().to_vec())
                }
                TokenType::Control | TokenType::UserDefined => t.as_bytes().to_vec(),
                TokenType::Unknown | TokenType::Unused => Vec::new(),
            }));
            (Encoder::Bpe(Box::new(enc)), bytes)
        };
        let mut eog: Vec<u32> = eos
            .into_iter()
            .chain(opt_id(f, "tokenizer.ggml.eot_token_id", n))
            .chain(opt_id(f, "tokenizer.ggml.eom_token_id", n))
            .collect();
        for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
            if *ty == TokenType::Control
                && EOG_TEXTS.contains(&t.as_str())
                && !eog.contains(&(i as u32))
            {
                eog.push(i as u32);
            }
        }
        Ok(Self {
            encoder,
            bytes,
            types,
            bos,
            eos,
            add_bos: bool_key("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos),
            add_eos: bool_key("tokenizer.ggml.add_eos_token").unwrap_or(false),
            eog,
            chat_template: f
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            tokens: Pieces::new(&tokens),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids of `text`. `parse_special` turns special-token text into those tokens
    /// (turn it off for untrusted text); `add_special` adds BOS/EOS as the model asks.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        match &self.encoder {
            Encoder::Bpe(e) => e.encode(text, parse_special, &mut ids)?,
            Encoder::Spm(e) => e.encode(text, parse_special, &mut ids),
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The bytes token `id` stands for (special tokens as their text).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.bytes.get(id as usize).ok_or(Error::BadToken(id))
    }

    /// The token's text as the vocabulary spells it.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.text(id as usize)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Every token's bytes concatenated, lossily decoded (ids out of range are an error).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// The end-of-sequence token, when the vocabulary names one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Text of the BOS / EOS tokens, as chat templates expect them.
    pub fn bos_text(&self) -> &str {
        self.bos.and_then(|i| self.token_text(i)).unwrap_or("")
    }
    pub fn eos_text(&self) -> &str {
        self.eos.and_then(|i| self.token_text(i)).unwrap_or("")
    }
}

/// Tokens matched as text before SentencePiece runs (control, user-defined and unknown
/// ones), longest first, with the strip rules llama.cpp gives Phi-3's by model name.
fn special_tokens(tokens: &[String], types: &[TokenType], model_name: &str) -> Vec<SpecialToken> {
    let phi3 = model_name.contains("phi-3") || model_name.contains("phi3");
    let mut v: Vec<SpecialToken> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| {
            matches!(
                ty,
                TokenType::Control | TokenType::UserDefined | TokenType::Unknown
            )
        })
        .map(|(i, (t, ty))| SpecialToken {
            id: i as u32,
            text: t.clone(),
            needs_parse_special: *ty != TokenType::UserDefined,
            lstrip: false,
            rstrip: phi3 && !matches!(t.as_str(), "<unk>" | "<s>" | "<|endoftext|>"),
        })
        .collect();
    v.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
    v
}
