//! Stop strings on streamed text: text that might be the start of a stop string is held
//! back until it is known not to be, so a client never sees part of one.

pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds text; returns what can be released and whether a stop string was reached
    /// (the stop string and everything after it are dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return (std::mem::take(&mut self.held), false);
        }
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self.longest_partial();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// Longest suffix of the held text that is a proper prefix of some stop string.
    fn longest_partial(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            for len in (1..s.len().min(h.len() + 1)).rev() {
                if len <= best {
                    break;
                }
                let start = h.len() - len;
                if h.is_char_boundary(start)
                    && s.is_char_boundary(len)
                    && s.as_bytes()[..len] == h.as_bytes()[start..]
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }

    /// The end of the stream: whatever was held back is real text after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_stop_strings_are_held_back_then_released_or_cut() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("hello E"), ("hello ".into(), false));
        assert_eq!(m.push("N"), ("".into(), false));
        assert_eq!(m.push("X more"), ("ENX more".into(), false));
        assert_eq!(m.push(" and EN"), (" and ".into(), false));
        assert_eq!(m.push("D tail"), ("".into(), true));
        let mut m = StopMatcher::new(vec!["\n\n".into(), "stop".into()]);
        assert_eq!(m.push("a\n"), ("a".into(), false));
        assert_eq!(m.finish(), "\n");
        let mut m = StopMatcher::new(vec!["xy".into()]);
        assert_eq!(m.push("abxyz"), ("ab".into(), true));
    }
}
