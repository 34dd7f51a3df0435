//! Reproducible random tensor bytes in GGUF's block formats.

use gguf::GgmlType;
use half::{bf16, f16};

/// xorshift64*, seeded from a tensor's name so files are reproducible byte for byte.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: &str) -> Self {
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Self(h | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// (elements, bytes) of one block of `ty`.
pub fn block_of(ty: GgmlType) -> (usize, usize) {
    match ty {
        GgmlType::F32 => (1, 4),
        GgmlType::F16 | GgmlType::BF16 => (1, 2),
        GgmlType::Q4_0 => (32, 18),
        GgmlType::Q4_1 => (32, 20),
        GgmlType::Q8_0 => (32, 34),
        GgmlType::Q4K => (256, 144),
        GgmlType::Q5K => (256, 176),
        GgmlType::Q6K => (256, 210),
        other => panic!("synth does not write {other:?}"),
    }
}

/// Bytes of `n` elements of `ty` (`n` a multiple of the block size).
pub fn bytes_of(ty: GgmlType, n: usize) -> usize {
    let (be, bb) = block_of(ty);
    n / be * bb
}

/// Random weights of a `rows × cols` matrix with a typical size of `gain / sqrt(cols)`.
/// Quantized blocks get uniform codes and per-tensor scales chosen so that the decoded
/// values are centred with that spread; float types get uniform values.
pub fn random_matrix(ty: GgmlType, rows: usize, cols: usize, gain: f32, seed: &str) -> Vec<u8> {
    let amp = gain / (cols as f32).sqrt();
    let n = rows * cols;
    let mut rng = Rng::new(seed);
    // Uniform on [-a, a] has standard deviation a / sqrt(3).
    let a = amp * 3f32.sqrt();
    match ty {
        GgmlType::F32 => {
            return (0..n)
                .flat_map(|_| (rng.uniform() * a).to_le_bytes())
                .collect()
        }
        GgmlType::F16 => {
            return (0..n)
                .flat_map(|_| f16::from_f32(rng.uniform() * a).to_le_bytes())
                .collect()
        }
        GgmlType::BF16 => {
            return (0..n)
                .flat_map(|_| bf16::from_f32(rng.uniform() * a).to_le_bytes())
                .collect()
        }
        _ => {}
    }
    let (be, bb) = block_of(ty);
    let mut out = vec![0u8; n / be * bb];
    rng.fill(&mut out);
    let put = |b: &mut [u8], at: usize, v: f32| {
        b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes())
    };
    for b in out.chunks_exact_mut(bb) {
        match ty {
            // value = d * (q - 8), q uniform in 0..16 (sd 4.6)
            GgmlType::Q4_0 => put(b, 0, amp / 4.6),
            // value = d * q + m, q uniform in 0..16
            GgmlType::Q4_1 => {
                put(b, 0, amp / 4.6);
                put(b, 2, -7.5 * amp / 4.6);
            }
            // value = d * q, q uniform in -128..128 (sd 74)
            GgmlType::Q8_0 => put(b, 0, amp / 74.0),
            // value = d * sc * q - dmin * m, sc and m uniform 6-bit, q uniform 4- or 5-bit
            GgmlType::Q4K | GgmlType::Q5K => {
                let half_q = if ty == GgmlType::Q4K { 7.5 } else { 15.5 };
                let d = amp / (31.5 * half_q);
                put(b, 0, d);
                put(b, 2, d * half_q);
            }
            // value = d * sc * (q - 32), sc a signed byte, q uniform 6-bit
            GgmlType::Q6K => put(b, 208, amp / (64.0 * 18.0)),
            _ => unreachable!(),
        }
    }
    out
}

/// `len` f32 values `centre + spread * u`, `u` uniform in [-1, 1) (norm weights, biases).
pub fn random_vector(len: usize, centre: f32, spread: f32, seed: &str) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len)
        .flat_map(|_| (centre + spread * rng.uniform()).to_le_bytes())
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
