//! Splitting text around special-token text before the model's own tokenizer runs, as
//! llama.cpp's `tokenizer_st_partition` does: one special token after another, longest
//! text first, each occurrence in every remaining piece of raw text.

/// A token matched as text before tokenization.
pub(crate) struct SpecialToken {
    pub id: u32,
    pub text: String,
    /// Control and unknown tokens are matched only when special text is parsed;
    /// user-defined ones always are.
    pub needs_parse_special: bool,
    /// Whitespace before the token is dropped.
    pub lstrip: bool,
    /// Whitespace after the token is dropped.
    pub rstrip: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// C's `isspace` in the "C" locale, which llama.cpp's strip rules use.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `specials` must be in llama.cpp's order: longest text first.
pub(crate) fn partition<'a>(
    text: &'a str,
    specials: &[SpecialToken],
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    let mut frags = if text.is_empty() {
        Vec::new()
    } else {
        vec![Fragment::Text(text)]
    };
    for sp in specials {
        if (sp.needs_parse_special && !parse_special) || sp.text.is_empty() {
            continue;
        }
        if !frags
            .iter()
            .any(|f| matches!(f, Fragment::Text(s) if s.contains(sp.text.as_str())))
        {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            let Fragment::Text(mut rest) = f else {
                next.push(f);
                continue;
            };
            while let Some(at) = rest.find(sp.text.as_str()) {
                let mut left = &rest[..at];
                if sp.lstrip {
                    left = left.trim_end_matches(|c: char| c.is_ascii() && c_isspace(c as u8));
                }
                if !left.is_empty() {
                    next.push(Fragment::Text(left));
                }
                next.push(Fragment::Token(sp.id));
                rest = &rest[at + sp.text.len()..];
                if sp.rstrip {
                    rest = rest.trim_start_matches(|c: char| c.is_ascii() && c_isspace(c as u8));
                }
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        frags = next;
    }
    frags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(id: u32, text: &str, needs: bool, lstrip: bool, rstrip: bool) -> SpecialToken {
        SpecialToken {
            id,
            text: text.into(),
            needs_parse_special: needs,
            lstrip,
            rstrip,
        }
    }

    #[test]
    fn splits_every_occurrence_and_keeps_text_between() {
        let s = [sp(7, "<|end|>", true, false, false)];
        assert_eq!(
            partition("a<|end|>b<|end|>", &s, true),
            vec![
                Fragment::Text("a"),
                Fragment::Token(7),
                Fragment::Text("b"),
                Fragment::Token(7)
            ]
        );
        assert_eq!(
            partition("a<|end|>b", &s, false),
            vec![Fragment::Text("a<|end|>b")]
        );
    }

    #[test]
    fn strip_flags_drop_adjacent_whitespace_only() {
        let s = [sp(1, "<x>", false, true, true)];
        assert_eq!(
            partition("a \t<x>\n b", &s, false),
            vec![Fragment::Text("a"), Fragment::Token(1), Fragment::Text("b")]
        );
        assert_eq!(partition("  <x>  ", &s, false), vec![Fragment::Token(1)]);
    }

    #[test]
    fn longer_specials_go_first() {
        let s = [
            sp(2, "<|im_end|>", true, false, false),
            sp(1, "<|im", true, false, false),
        ];
        assert_eq!(
            partition("<|im_end|><|im", &s, true),
            vec![Fragment::Token(2), Fragment::Token(1)]
        );
    }
}
