//! ggml's block formats: geometry and scalar dequantization to f32, the reference that
//! every packed layout is checked against.

mod kquants;

pub use kquants::{dequant_q4k, dequant_q5k, dequant_q6k, scale_min_k4};

use half::{bf16, f16};

/// The weight encodings the engine computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantFormat {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl QuantFormat {
    /// From a ggml type name as GGUF spells it ("Q4_1", "Q4_K", ...).
    pub fn from_ggml_name(name: &str) -> Option<Self> {
        Some(match name {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "Q4_0" => Self::Q4_0,
            "Q4_1" => Self::Q4_1,
            "Q8_0" => Self::Q8_0,
            "Q4_K" => Self::Q4K,
            "Q5_K" => Self::Q5K,
            "Q6_K" => Self::Q6K,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes of one row of `cols` elements, or an error when the row is ragged.
    pub fn row_bytes(self, cols: usize) -> crate::Result<usize> {
        let (be, bb) = self.block();
        if !cols.is_multiple_of(be) {
            return Err(crate::Error::RaggedRow {
                cols,
                fmt: self.name(),
                block: be,
            });
        }
        Ok(cols / be * bb)
    }
}

pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes one row (`out.len()` elements) of `fmt` data to f32, exactly as ggml defines
/// each format.
pub fn dequantize_row(fmt: QuantFormat, data: &[u8], out: &mut [f32]) {
    let (be, bb) = fmt.block();
    for (blk, o) in data.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        match fmt {
            QuantFormat::F32 => o[0] = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]),
            QuantFormat::F16 => o[0] = f16_at(blk, 0),
            QuantFormat::BF16 => o[0] = bf16::from_le_bytes([blk[0], blk[1]]).to_f32(),
            QuantFormat::Q4_0 => {
                let d = f16_at(blk, 0);
                for j in 0..16 {
                    o[j] = ((blk[2 + j] & 0xF) as i32 - 8) as f32 * d;
                    o[j + 16] = ((blk[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
            QuantFormat::Q4_1 => {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                for j in 0..16 {
                    o[j] = (blk[4 + j] & 0xF) as f32 * d + m;
                    o[j + 16] = (blk[4 + j] >> 4) as f32 * d + m;
                }
            }
            QuantFormat::Q8_0 => {
                let d = f16_at(blk, 0);
                for j in 0..32 {
                    o[j] = blk[2 + j] as i8 as f32 * d;
                }
            }
            QuantFormat::Q4K => dequant_q4k(blk, o),
            QuantFormat::Q5K => dequant_q5k(blk, o),
            QuantFormat::Q6K => dequant_q6k(blk, o),
        }
    }
}
