use crate::byte_level::token_bytes;
use crate::{pretok, Error, Result};
use gguf::GgufFile;
use std::sync::Arc;
use tokenizers::models::bpe::BPE;
use tokenizers::AddedToken;

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
const EOG_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "</s>",
];

pub struct Tokenizer {
    /// Splits special-token text into special tokens before BPE (parse_special = true).
    with_special: Hf,
    /// Only user-defined tokens are matched as text (parse_special = false).
    plain: Hf,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    bytes: Vec<Vec<u8>>,
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
        if model != "gpt2" {
            return Err(Error::UnsupportedModel(model.to_string()));
        }
        let pre = f
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let pre_tok = pretok::for_pre(pre)?;
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
        let merges: Vec<(String, String)> = f
            .get_array("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let s = v
                    .as_str()
                    .ok_or_else(|| Error::Metadata("merge is not a string".into()))?;
                let (a, b) = s
                    .split_once(' ')
                    .ok_or_else(|| Error::Metadata(format!("merge {s:?} has no space")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<_>>()?;

        let mut vocab = ahash_vocab(&tokens);
        // Special tokens are matched by the added-token pass, never by BPE.
        vocab.shrink_to_fit();
        let bpe = Arc::new(
            BPE::builder()
                .vocab_and_merges(vocab, merges)
                .ignore_merges(pretok::ignores_merges(pre))
                .build()
                .map_err(|e| Error::Backend(e.to_string()))?,
        );
        let build = |specials: bool| -> Result<Hf> {
            let mut t = Hf::new(SharedBpe(bpe.clone()));
            t.with_pre_tokenizer(Some(pre_tok.clone()));
            let added: Vec<AddedToken> = tokens
                .iter()
                .zip(&types)
                .filter(|(_, ty)| {
                    **ty == TokenType::UserDefined || (specials && **ty == TokenType::Control)
                })
                .map(|(text, ty)| {
                    AddedToken::from(text.clone(), *ty == TokenType::Control).normalized(false)
                })
                .collect();
            t.add_special_tokens(added)
                .map_err(|e| Error::Backend(e.to_string()))?;
            Ok(t)
        };
        let with_special = build(true)?;
        let plain = build(false)?;

        let bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, ty)| match ty {
                TokenType::Normal | TokenType::Byte => {
                    token_bytes(t).unwrap_or_else(|| t.as_bytes().to_vec())
                }
                TokenType::Control | TokenType::UserDefined => t.as_bytes().to_vec(),
                TokenType::Unknown | TokenType::Unused => Vec::new(),
            })
            .collect();
        let bos = opt_id(f, "tokenizer.ggml.bos_token_id", n);
        let eos = opt_id(f, "tokenizer.ggml.eos_token_id", n);
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
            with_special,
            plain,
            bytes,
            types,
            bos,
            eos,
            add_bos: f
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            add_eos: f
                .get("tokenizer.ggml.add_eos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            eog,
            chat_template: f
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            tokens,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Token ids of `text`. `parse_special` turns special-token text into those tokens
    /// (turn it off for untrusted text); `add_special` adds BOS/EOS as the model asks.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let t = if parse_special {
            &self.with_special
        } else {
            &self.plain
        };
        let enc = t
            .encode_fast(text, false)
            .map_err(|e| Error::Backend(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The bytes token `id` stands for (special tokens as their text).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.bytes
            .get(id as usize)
            .map(|b| b.as_slice())
            .ok_or(Error::BadToken(id))
    }

    /// The token's text as the vocabulary spells it.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
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

/// The two tokenizers (special-token text parsed or not) differ only in their added
/// tokens; they share one BPE model, whose vocabulary and merges are most of a large
/// vocabulary's memory (sharing it cut RSS after load by 80 MiB with Llama 3's 128k tokens).
#[derive(Clone)]
struct SharedBpe(Arc<BPE>);

impl tokenizers::Model for SharedBpe {
    type Trainer = <BPE as tokenizers::Model>::Trainer;
    fn tokenize(&self, sequence: &str) -> tokenizers::Result<Vec<tokenizers::Token>> {
        self.0.tokenize(sequence)
    }
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }
    fn get_vocab(&self) -> std::collections::HashMap<String, u32> {
        self.0.get_vocab()
    }
    fn get_vocab_size(&self) -> usize {
        self.0.get_vocab_size()
    }
    fn save(
        &self,
        folder: &std::path::Path,
        prefix: Option<&str>,
    ) -> tokenizers::Result<Vec<std::path::PathBuf>> {
        self.0.save(folder, prefix)
    }
    fn get_trainer(&self) -> Self::Trainer {
        self.0.get_trainer()
    }
}

type Hf = tokenizers::TokenizerImpl<
    SharedBpe,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

fn ahash_vocab(tokens: &[String]) -> tokenizers::models::bpe::Vocab {
    let mut v = tokenizers::models::bpe::Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        // First occurrence wins, as in llama.cpp's token_to_id map.
        v.entry(t.clone()).or_insert(i as u32);
    }
    v
}
