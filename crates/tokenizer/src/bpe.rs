//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) through the `tokenizers` crate, with
//! the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`.

use crate::vocab::TokenType;
use crate::{pretok, Error, Result};
use gguf::GgufFile;
use std::sync::Arc;
use tokenizers::models::bpe::BPE;
use tokenizers::AddedToken;

pub(crate) struct BpeEncoder {
    /// Splits special-token text into special tokens before BPE (parse_special = true).
    with_special: Hf,
    /// Only user-defined tokens are matched as text (parse_special = false).
    plain: Hf,
}

impl BpeEncoder {
    pub fn from_gguf(
        f: &GgufFile,
        pre: &str,
        tokens: &[String],
        types: &[TokenType],
    ) -> Result<Self> {
        let pre_tok = pretok::for_pre(pre)?;
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

        let mut vocab = ahash_vocab(tokens);
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
                .zip(types)
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
        Ok(Self {
            with_special: build(true)?,
            plain: build(false)?,
        })
    }

    /// Ids of `text`, without BOS/EOS.
    pub fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) -> Result<()> {
        let t = if parse_special {
            &self.with_special
        } else {
            &self.plain
        };
        let enc = t
            .encode_fast(text, false)
            .map_err(|e| Error::Backend(e.to_string()))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
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
        // First occurrence wins: the BPE vocabularies this serves have no duplicates
        // whose choice the test vectors could tell apart.
        v.entry(t.clone()).or_insert(i as u32);
    }
    v
}
