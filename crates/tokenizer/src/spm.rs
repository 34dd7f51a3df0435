//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`: Llama 2, Mistral,
//! Gemma, Phi-3) as llama.cpp does it: spaces become `▁`, a space is put before the
//! text at the start and after every special token (when `add_space_prefix`), then
//! adjacent symbols are merged greedily by the score of the token they form; a piece
//! that is no token falls back to its bytes (`<0xAB>`).

use crate::special::{partition, Fragment, SpecialToken};
use crate::vocab::TokenType;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

const SPACE: &str = "\u{2581}";

pub(crate) struct SpmEncoder {
    token_to_id: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    specials: Vec<SpecialToken>,
    add_space_prefix: bool,
}

/// A candidate merge of two adjacent symbols.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

// The heap yields the highest score first and, among equal scores, the leftmost pair
// (llama.cpp's comparator).
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// A run of the text's bytes in a doubly linked list of symbols.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl SpmEncoder {
    pub fn new(
        tokens: &[String],
        types: &[TokenType],
        scores: Vec<f32>,
        unk: Option<u32>,
        specials: Vec<SpecialToken>,
        add_space_prefix: bool,
    ) -> Self {
        // Later duplicates win, as in llama.cpp's token_to_id map.
        let token_to_id: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = token_to_id
                .get(&format!("<0x{b:02X}>"))
                .or_else(|| {
                    // Without a byte token, llama.cpp tries the byte as a one-character
                    // string (ASCII only can be one).
                    (b < 0x80)
                        .then(|| (b as u8 as char).to_string())
                        .and_then(|s| token_to_id.get(&s))
                })
                .copied();
        }
        debug_assert_eq!(tokens.len(), types.len());
        Self {
            token_to_id,
            scores,
            byte_ids,
            unk,
            specials,
            add_space_prefix,
        }
    }

    /// Ids of `text`, without BOS/EOS.
    pub fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        let mut prev_special = true;
        for frag in partition(text, &self.specials, parse_special) {
            match frag {
                Fragment::Text(s) => {
                    let mut t = String::with_capacity(s.len() + 3);
                    if self.add_space_prefix && prev_special {
                        t.push(' ');
                    }
                    t.push_str(s);
                    self.encode_piece(&t.replace(' ', SPACE), out);
                    prev_special = false;
                }
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
            }
        }
    }

    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                syms[i - 1].next = Some(i);
            }
        }
        let mut heap = BinaryHeap::new();
        for i in 1..syms.len() {
            self.try_bigram(text, &syms, i - 1, i, &mut heap);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Skip pairs that an earlier merge changed.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            syms[b.left].len += r.len;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if let Some(n) = r.next {
                syms[n].prev = Some(b.left);
            }
            if let Some(p) = syms[b.left].prev {
                self.try_bigram(text, &syms, p, b.left, &mut heap);
            }
            if let Some(n) = syms[b.left].next {
                self.try_bigram(text, &syms, b.left, n, &mut heap);
            }
        }
        let mut at = (!syms.is_empty()).then_some(0);
        while let Some(i) = at {
            let s = syms[i];
            let piece = &text[s.start..s.start + s.len];
            match self.token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        if let Some(id) = self.byte_ids[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            at = s.next;
        }
    }

    fn try_bigram(
        &self,
        text: &str,
        syms: &[Symbol],
        left: usize,
        right: usize,
        heap: &mut BinaryHeap<Bigram>,
    ) {
        let (l, r) = (syms[left], syms[right]);
        let size = l.len + r.len;
        let piece = &text[l.start..l.start + size];
        if let Some(&id) = self.token_to_id.get(piece) {
            heap.push(Bigram {
                left,
                right,
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                size,
            });
        }
    }
}

/// The bytes an SPM token stands for: `▁` as a space, byte tokens as their byte.
pub(crate) fn spm_token_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Byte => byte_token_value(text)
            .map(|b| vec![b])
            .unwrap_or_else(|| text.as_bytes().to_vec()),
        TokenType::Normal => text.replace(SPACE, " ").into_bytes(),
        TokenType::Control | TokenType::UserDefined => text.as_bytes().to_vec(),
        TokenType::Unknown | TokenType::Unused => Vec::new(),
    }
}

/// `<0xAB>` → 0xAB.
fn byte_token_value(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(vocab: &[(&str, f32)], prefix: bool) -> SpmEncoder {
        let tokens: Vec<String> = vocab.iter().map(|v| v.0.to_string()).collect();
        let types = vec![TokenType::Normal; tokens.len()];
        SpmEncoder::new(
            &tokens,
            &types,
            vocab.iter().map(|v| v.1).collect(),
            None,
            Vec::new(),
            prefix,
        )
    }

    #[test]
    fn merges_by_score_not_by_order() {
        // "abc": "ab" (score -5) loses to "bc" (score -1), so the result is a + bc.
        let e = enc(
            &[
                ("a", -9.0),
                ("b", -9.0),
                ("c", -9.0),
                ("ab", -5.0),
                ("bc", -1.0),
            ],
            false,
        );
        let mut out = Vec::new();
        e.encode("abc", false, &mut out);
        assert_eq!(out, vec![0, 4]);
    }

    #[test]
    fn space_prefix_and_byte_fallback() {
        let mut vocab: Vec<(String, f32)> = vec![("\u{2581}".into(), -1.0), ("x".into(), -2.0)];
        for b in 0..=255u8 {
            vocab.push((format!("<0x{b:02X}>"), 0.0));
        }
        let refs: Vec<(&str, f32)> = vocab.iter().map(|(s, f)| (s.as_str(), *f)).collect();
        let e = enc(&refs, true);
        let mut out = Vec::new();
        e.encode("xé", false, &mut out);
        // ▁, x, then é as its two UTF-8 bytes.
        assert_eq!(out, vec![0, 1, 2 + 0xC3, 2 + 0xA9]);
    }
}
