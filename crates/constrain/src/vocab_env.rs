//! llguidance's view of our vocabulary: every token's bytes in a trie (special tokens
//! behind the trie's marker byte, so no grammar text can spell them), and our own
//! tokenizer for the text llguidance needs tokenized.

use std::sync::Arc;
use tokenizer::{TokenType, Tokenizer};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

struct VocabEnv {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self.tok.encode(text, false, false).unwrap_or_default(),
            // Not text: the trie's greedy split is as good as any.
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

pub(crate) fn eos_of(tok: &Tokenizer) -> Result<u32, String> {
    tok.eos()
        .or_else(|| tok.eog_tokens().first().copied())
        .ok_or_else(|| "the vocabulary has no end-of-sequence token".to_string())
}

pub(crate) fn token_env(tok: Arc<Tokenizer>) -> Result<TokEnv, String> {
    let n = tok.vocab_size();
    let mut words = Vec::with_capacity(n);
    for id in 0..n as u32 {
        let bytes = tok.token_bytes(id).map_err(|e| e.to_string())?;
        let special = matches!(
            tok.token_type(id),
            Some(TokenType::Control | TokenType::UserDefined | TokenType::Unused)
        ) || tok.is_eog(id);
        words.push(if special {
            let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
            w.extend_from_slice(bytes);
            w
        } else {
            bytes.to_vec()
        });
    }
    let mut info = TokRxInfo::new(n as u32, eos_of(&tok)?);
    info.tok_end_of_turn = tok
        .eog_tokens()
        .iter()
        .copied()
        .find(|&t| Some(t) != tok.eos());
    let trie = TokTrie::from(&info, &words);
    Ok(Arc::new(VocabEnv { trie, tok }))
}
