use crate::quant::QuantFormat;

/// Weight rows per panel: one 512-bit vector of f32 (or i32) outputs.
pub const PANEL: usize = 16;

/// A weight matrix (`rows × cols`) in the layout the kernels read: rows are grouped in
/// panels of 16, padded to whole panels with zeros.
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    /// Bits of the activation codes quantized weights multiply with: 16 (default) or 8.
    act_bits: u8,
    pub(crate) source: QuantFormat,
    pub(crate) data: Packed,
}

pub(crate) enum Packed {
    /// `[panel][k][16]` f32: one vector load yields element `k` of 16 rows.
    F32(Vec<f32>),
    /// Unsigned integer codes: value = fma(code, scale, min), per block of 16 or 32.
    Codes(CodePanels),
}

/// How a block's 16 codes per row are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodeBits {
    /// Codes < 16: `block / 8` 64-byte groups, byte `4r + j` of group `g` holding row `r`'s
    /// code `8g + j` (low nibble) and `8g + 4 + j` (high nibble).
    Nib4,
    /// Codes < 32 (Q5_K): the nibbles, then 64 bytes whose byte `4r + j` holds in bit `v`
    /// bit 4 of code `4v + j`.
    Nib4Hi1,
    /// Codes < 64 (Q6_K, blocks of 16): the nibbles, then 64 bytes whose byte `4r + j`
    /// holds in bits `2v, 2v + 1` bits 4 and 5 of code `4v + j`.
    Nib4Hi2,
    /// Whole bytes: `block / 4` 64-byte groups, byte `4r + j` of group `g` holding code
    /// `4g + j`.
    Bytes,
}

/// Where a block's scale and min come from. Every value below is computed with one
/// exact f32 operation (11-bit by 6- or 8-bit products, powers of two), so it equals
/// what the old wide layout stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleBits {
    /// Per block: 16 f16 scales, then 16 f16 mins (Q4_1).
    ScaleMin,
    /// Per block: 16 f16 scales; min = -offset * scale (Q4_0: 8, Q8_0: 128).
    ScaleOffset(u8),
    /// Per super-block of 8 blocks (Q4_K, Q5_K): 16 f16 `d`, 16 f16 `dmin`, then the 6-bit
    /// sub-block scales and mins: 64 bytes of low nibbles of the scales (byte
    /// `16 (j / 2) + r`, nibble `j % 2`), 64 of the mins, and 64 bytes of high bits (byte
    /// `16 (j / 2) + r`: bits `2 (j % 2)` the scale's, bits `4 + 2 (j % 2)` the min's).
    /// scale = d * sc, min = dmin * -m.
    Super6,
    /// Per super-block of 16 blocks (Q6_K): 16 f16 `d`, then 256 signed scale bytes
    /// (byte `16 j + r`); scale = d * sc, min = -32 * scale. The kernels fold the offset
    /// and `sc` into the integer product and apply `d` once per super-block
    /// (`scalar::codes_gemm`).
    SuperI8,
}

impl ScaleBits {
    /// Blocks sharing one header.
    pub fn blocks_per_group(self) -> usize {
        match self {
            Self::ScaleMin | Self::ScaleOffset(_) => 1,
            Self::Super6 => 8,
            Self::SuperI8 => 16,
        }
    }
    pub fn header_bytes(self) -> usize {
        match self {
            Self::ScaleMin => 64,
            Self::ScaleOffset(_) => 32,
            Self::Super6 => 64 + 192,
            Self::SuperI8 => 32 + 256,
        }
    }
}

/// Integer codes in panels of 16 rows, in GGUF's own bytes per weight: per panel, groups
/// of one header (the scale bits of `blocks_per_group` blocks, all 16 rows) followed by
/// those blocks' codes, laid out for `vpdpbusd`, whose 32-bit lane `r` takes four
/// consecutive codes of row `r`. Batch-1 decode streams exactly these bytes.
pub(crate) struct CodePanels {
    pub block: usize,
    pub codes: CodeBits,
    pub scales: ScaleBits,
    /// The largest code, which decides how the AVX2 kernel may multiply.
    pub max_code: u8,
    pub data: Vec<u8>,
}

/// Byte offsets of one block of one panel: its group's header, the block's index in the
/// group, and its codes.
#[derive(Clone, Copy)]
pub(crate) struct BlockAt {
    pub hdr: usize,
    pub j: usize,
    pub codes: usize,
}

fn f16_le(d: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([d[i], d[i + 1]]).to_f32()
}

impl CodePanels {
    /// Bytes of one block's codes for all 16 rows.
    pub fn code_bytes(&self) -> usize {
        match self.codes {
            CodeBits::Nib4 => self.block * PANEL / 2,
            CodeBits::Nib4Hi1 | CodeBits::Nib4Hi2 => self.block * PANEL / 2 + 64,
            CodeBits::Bytes => self.block * PANEL,
        }
    }
    /// Offset of the high bits within a block's codes.
    pub fn high_bits_at(&self) -> usize {
        self.block * PANEL / 2
    }
    pub fn group_bytes(&self) -> usize {
        self.scales.header_bytes() + self.scales.blocks_per_group() * self.code_bytes()
    }
    /// The bounds every SIMD kernel relies on before it reads without checks: `acts` holds
    /// `m` rows of `k` quantized with this block size, `y` `m` rows of `n`, and panels up
    /// to `p1` exist.
    pub fn check_job(
        &self,
        k: usize,
        n: usize,
        p1: usize,
        acts: &super::acts::QuantActs,
        m: usize,
        y_len: usize,
    ) {
        let nb = k / self.block;
        assert!(acts.k == k && acts.block == self.block && acts.hi.len() >= m * k);
        assert!(acts.lo.len() >= m * k && acts.scale.len() >= m * nb);
        assert!(nb.is_multiple_of(self.scales.blocks_per_group()));
        let groups = nb / self.scales.blocks_per_group();
        assert!(y_len >= m * n && self.data.len() >= p1 * groups * self.group_bytes());
        assert!(self.codes == CodeBits::Bytes || self.block.is_multiple_of(16));
    }

    /// Where block `b` of panel `p` lies in a matrix of `nb` blocks per row.
    pub fn block_at(&self, p: usize, nb: usize, b: usize) -> BlockAt {
        let bpg = self.scales.blocks_per_group();
        let (g, j) = (b / bpg, b % bpg);
        let hdr = (p * (nb / bpg) + g) * self.group_bytes();
        BlockAt {
            hdr,
            j,
            codes: hdr + self.scales.header_bytes() + j * self.code_bytes(),
        }
    }

    /// The 6-bit sub-block scale (`min == false`) or min of lane `r` (Q4_K, Q5_K).
    fn super6(&self, at: BlockAt, lane: usize, min: bool) -> u8 {
        let d = &self.data[at.hdr + 64..];
        let i = 16 * (at.j / 2) + lane;
        let lo = (d[i + if min { 64 } else { 0 }] >> (4 * (at.j % 2))) & 0xF;
        let hi = (d[128 + i] >> (2 * (at.j % 2) + if min { 4 } else { 0 })) & 3;
        lo | (hi << 4)
    }

    pub fn scale(&self, at: BlockAt, lane: usize) -> f32 {
        let d = f16_le(&self.data, at.hdr + 2 * lane);
        match self.scales {
            ScaleBits::ScaleMin | ScaleBits::ScaleOffset(_) => d,
            ScaleBits::Super6 => d * self.super6(at, lane, false) as f32,
            ScaleBits::SuperI8 => d * self.sub_scale(at, lane) as f32,
        }
    }
    pub fn min(&self, at: BlockAt, lane: usize) -> f32 {
        match self.scales {
            ScaleBits::ScaleMin => f16_le(&self.data, at.hdr + 32 + 2 * lane),
            ScaleBits::ScaleOffset(o) => self.scale(at, lane) * -(o as f32),
            ScaleBits::Super6 => {
                f16_le(&self.data, at.hdr + 32 + 2 * lane) * -(self.super6(at, lane, true) as f32)
            }
            ScaleBits::SuperI8 => self.scale(at, lane) * -32.0,
        }
    }
    /// The super-block scale `d` of lane `r` (`SuperI8`).
    pub fn super_d(&self, at: BlockAt, lane: usize) -> f32 {
        f16_le(&self.data, at.hdr + 2 * lane)
    }
    /// The signed sub-block scale `sc` of lane `r` (`SuperI8`).
    pub fn sub_scale(&self, at: BlockAt, lane: usize) -> i32 {
        (self.data[at.hdr + 32 + 16 * at.j + lane] as i8) as i32
    }
    /// Code `kk` (within the block) of panel row `lane`.
    pub fn code(&self, at: BlockAt, lane: usize, kk: usize) -> u8 {
        let (c, v, j) = (at.codes, kk / 4, kk % 4);
        if self.codes == CodeBits::Bytes {
            return self.data[c + 64 * v + 4 * lane + j];
        }
        let nib = (self.data[c + 64 * (v / 2) + 4 * lane + j] >> (4 * (v % 2))) & 0xF;
        let high = || self.data[c + self.high_bits_at() + 4 * lane + j];
        match self.codes {
            CodeBits::Nib4Hi1 => nib | (((high() >> v) & 1) << 4),
            CodeBits::Nib4Hi2 => nib | (((high() >> (2 * v)) & 3) << 4),
            _ => nib,
        }
    }
}

impl PackedMatrix {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn source_format(&self) -> QuantFormat {
        self.source
    }
    /// 16-bit activation codes (error ≤ amax/65024 per block, the default: what keeps the
    /// engine closest to the exact model) or 8-bit ones (≤ amax/254, llama.cpp's
    /// arithmetic): half the integer multiplies, for prefill-bound work. f32 weights
    /// ignore it. Panics on other values.
    pub fn set_activation_bits(&mut self, bits: u8) {
        assert!(bits == 8 || bits == 16, "activation bits {bits}: 8 or 16");
        self.act_bits = bits;
    }
    pub fn activation_bits(&self) -> u8 {
        self.act_bits
    }
    pub fn panels(&self) -> usize {
        self.rows.div_ceil(PANEL)
    }

    /// Bytes the kernels stream per full pass over the matrix.
    pub fn packed_bytes(&self) -> usize {
        match &self.data {
            Packed::F32(v) => v.len() * 4,
            Packed::Codes(c) => c.data.len(),
        }
    }

    /// A quantized matrix from its panels (see `repack`).
    pub(super) fn from_code_panels(
        rows: usize,
        cols: usize,
        source: QuantFormat,
        panels: CodePanels,
    ) -> Self {
        Self {
            rows,
            cols,
            act_bits: 16,
            source,
            data: Packed::Codes(panels),
        }
    }

    /// A dense matrix from row-major f32 values.
    pub fn from_f32(values: Vec<f32>, rows: usize, cols: usize) -> Self {
        Self::from_f32_as(values, rows, cols, QuantFormat::F32)
    }

    pub(super) fn from_f32_as(
        values: Vec<f32>,
        rows: usize,
        cols: usize,
        source: QuantFormat,
    ) -> Self {
        assert_eq!(values.len(), rows * cols);
        let panels = rows.div_ceil(PANEL);
        let mut out = vec![0f32; panels * cols * PANEL];
        for r in 0..rows {
            let (p, lane) = (r / PANEL, r % PANEL);
            for k in 0..cols {
                out[(p * cols + k) * PANEL + lane] = values[r * cols + k];
            }
        }
        Self {
            rows,
            cols,
            act_bits: 16,
            source,
            data: Packed::F32(out),
        }
    }

    /// One row dequantized, for embedding lookups.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "row {r} of {}", self.rows);
        let (p, lane) = (r / PANEL, r % PANEL);
        let k = self.cols;
        match &self.data {
            Packed::F32(v) => {
                for (kk, o) in out.iter_mut().enumerate().take(k) {
                    *o = v[(p * k + kk) * PANEL + lane];
                }
            }
            Packed::Codes(c) => {
                let nb = k / c.block;
                for b in 0..nb {
                    let at = c.block_at(p, nb, b);
                    let (s, m) = (c.scale(at, lane), c.min(at, lane));
                    for kk in 0..c.block {
                        out[b * c.block + kk] = (c.code(at, lane, kk) as f32).mul_add(s, m);
                    }
                }
            }
        }
    }
}
