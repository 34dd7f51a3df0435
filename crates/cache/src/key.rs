//! Cache keys: the SHA-256 of a canonical serialization of everything that can change a
//! response. The caller describes the request as a struct whose fields are in a fixed
//! order (serde serializes them in declaration order), so field order and whitespace in
//! the client's JSON never reach the key, and fields that cannot change the output
//! (`stream`, `user`, request ids) are simply not in the struct.

use serde::Serialize;
use sha2::Digest;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

/// Domain separation: a different key schema must never collide with this one.
const SCHEMA: &[u8] = b"autoglm-response-cache-key/v1\0";

impl Key {
    pub fn of<T: Serialize>(material: &T) -> Key {
        let mut h = sha2::Sha256::new();
        h.update(SCHEMA);
        // Serializing a plain struct of strings and numbers cannot fail.
        h.update(serde_json::to_vec(material).unwrap_or_default());
        Key(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", &self.hex()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct M<'a> {
        prompt: &'a str,
        temperature: f32,
    }

    #[test]
    fn equal_material_equal_key_and_any_difference_changes_it() {
        let a = Key::of(&M {
            prompt: "hi",
            temperature: 0.0,
        });
        assert_eq!(
            a,
            Key::of(&M {
                prompt: "hi",
                temperature: 0.0
            })
        );
        assert_ne!(
            a,
            Key::of(&M {
                prompt: "hi ",
                temperature: 0.0
            })
        );
        assert_ne!(
            a,
            Key::of(&M {
                prompt: "hi",
                temperature: 0.5
            })
        );
        assert_eq!(a.hex().len(), 64);
    }
}
