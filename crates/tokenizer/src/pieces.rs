//! A vocabulary's token strings in one allocation. As `Vec<String>` each of 128k short
//! tokens costs ~45 bytes of header and allocator rounding on top of its ~7 bytes of text,
//! resident for the life of the server.

pub(crate) struct Pieces {
    bytes: Vec<u8>,
    /// `ends[i]` is where piece `i` ends in `bytes` (it starts where `i - 1` ends).
    ends: Vec<usize>,
}

impl Pieces {
    pub fn new<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> Self {
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        for item in items {
            bytes.extend_from_slice(item.as_ref());
            ends.push(bytes.len());
        }
        bytes.shrink_to_fit();
        ends.shrink_to_fit();
        Self { bytes, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// Piece `i` as text, for pieces built from strings.
    pub fn text(&self, i: usize) -> Option<&str> {
        self.get(i).and_then(|b| std::str::from_utf8(b).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::Pieces;

    #[test]
    fn pieces_come_back_as_stored_empty_ones_included() {
        let p = Pieces::new(["a", "", "héllo", "<|eot|>"]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.get(0), Some(&b"a"[..]));
        assert_eq!(p.get(1), Some(&b""[..]));
        assert_eq!(p.text(2), Some("héllo"));
        assert_eq!(p.text(3), Some("<|eot|>"));
        assert_eq!(p.get(4), None);
    }
}
