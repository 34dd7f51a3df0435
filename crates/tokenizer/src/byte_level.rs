//! GPT-2's reversible map between bytes and printable characters.

use std::collections::HashMap;
use std::sync::OnceLock;

fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            b as char
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

fn char_to_byte() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| {
        byte_to_char_table()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// The raw bytes a byte-level token stands for; `None` if a character is outside the map.
pub fn token_bytes(token: &str) -> Option<Vec<u8>> {
    let map = char_to_byte();
    token.chars().map(|c| map.get(&c).copied()).collect()
}
