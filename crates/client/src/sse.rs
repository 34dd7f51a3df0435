//! Incremental server-sent-events parsing: bytes in as they arrive, `data:` payloads out
//! as soon as their event is complete.

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Appends `bytes` and returns the data of every event completed by them (multi-line
    /// data joined with `\n`; comments and other fields skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some((end, sep)) = event_end(&self.buf[pos..]) {
            let event = String::from_utf8_lossy(&self.buf[pos..pos + end]).into_owned();
            pos += end + sep;
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        self.buf.drain(..pos);
        out
    }

    /// Bytes of an event not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// (start of the blank line, its length) ending the first complete event: `\n\n` or
/// `\r\n\r\n`, found in one pass.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(off) = buf[from..].iter().position(|&b| b == b'\n') {
        let p = from + off;
        if buf.get(p + 1) == Some(&b'\n') {
            return Some((p, 2));
        }
        if p >= 1 && buf[p - 1] == b'\r' && buf.get(p + 1..p + 3) == Some(b"\r\n") {
            return Some((p - 1, 4));
        }
        from = p + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = b"data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\r\n\r\n";
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&text[..cut]);
            got.extend(p.push(&text[cut..]));
            assert_eq!(
                got,
                vec!["{\"a\":1}".to_string(), "[DONE]".to_string()],
                "cut at {cut}"
            );
            assert_eq!(p.pending(), 0);
        }
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: a\ndata: b\n\n"), vec!["a\nb".to_string()]);
    }
}
