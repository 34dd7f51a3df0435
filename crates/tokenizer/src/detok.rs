//! Streaming detokenization that never splits a UTF-8 character.

use crate::{Result, Tokenizer};

#[derive(Default)]
pub struct Detokenizer {
    pending: Vec<u8>,
}

impl Detokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token and returns the text that is now complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.pending.extend_from_slice(tok.token_bytes(id)?);
        Ok(self.take_complete())
    }

    fn take_complete(&mut self) -> String {
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) => match e.error_len() {
                // An invalid sequence (not merely incomplete) will never become valid:
                // emit it as U+FFFD rather than holding it forever.
                Some(bad) => {
                    let upto = e.valid_up_to() + bad;
                    let out = String::from_utf8_lossy(&self.pending[..upto]).into_owned();
                    self.pending.drain(..upto);
                    return out + &self.take_complete();
                }
                None => e.valid_up_to(),
            },
        };
        let rest = self.pending.split_off(valid);
        let done = std::mem::replace(&mut self.pending, rest);
        String::from_utf8(done).unwrap_or_default()
    }

    /// Whatever is left at the end of a stream (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
