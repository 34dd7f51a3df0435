use crate::quant::{scale_min_k4, QuantFormat};
use crate::{Error, Result};

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

/// Codes and scale bits of every row, before they are laid out in panels.
struct RowCodes {
    block: usize,
    codes: Vec<u8>,
    /// Per row and block (`ScaleMin`, `ScaleOffset`): f16 scale and min; per row and
    /// super-block (`Super6`, `SuperI8`): f16 `d` and `dmin`.
    d: Vec<[u8; 2]>,
    dmin: Vec<[u8; 2]>,
    /// Per row and block (`Super6`, `SuperI8`): the sub-block scale and min bits.
    sub_scale: Vec<u8>,
    sub_min: Vec<u8>,
}

impl RowCodes {
    fn new(block: usize, n: usize) -> Self {
        Self {
            block,
            codes: Vec::with_capacity(n),
            d: Vec::new(),
            dmin: Vec::new(),
            sub_scale: Vec::new(),
            sub_min: Vec::new(),
        }
    }
}

fn f16_bytes(b: &[u8], i: usize) -> [u8; 2] {
    [b[i], b[i + 1]]
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

    /// Repacks ggml-encoded `data` (`rows` rows of `cols` elements in `fmt`).
    ///
    /// Every quantized format becomes `value = code * scale + min` with an unsigned code,
    /// which is exact: signed codes are offset (Q8_0 by 128, Q6_K by 32, Q4_0 by 8) and
    /// the offset moves into `min`; K-quant sub-block scales times the super-block scale
    /// are exact in f32 (11-bit by 6- or 8-bit products).
    pub fn from_ggml(fmt: QuantFormat, data: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let row_bytes = fmt.row_bytes(cols)?;
        let expected = row_bytes * rows;
        if data.len() != expected {
            return Err(Error::BadSize {
                got: data.len(),
                expected,
                rows,
                cols,
                fmt: fmt.name(),
            });
        }
        let n = rows * cols;
        let (_, bb) = fmt.block();
        let blocks = data.chunks_exact(bb);
        let mut rc = RowCodes::new(32, n);
        let (codes, scales) = match fmt {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => {
                let mut v = vec![0f32; n];
                crate::quant::dequantize_row(fmt, data, &mut v);
                return Ok(Self::from_f32_as(v, rows, cols, fmt));
            }
            QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
                let q4_1 = fmt == QuantFormat::Q4_1;
                for b in blocks {
                    rc.d.push(f16_bytes(b, 0));
                    let q = if q4_1 {
                        rc.dmin.push(f16_bytes(b, 2));
                        &b[4..20]
                    } else {
                        &b[2..18]
                    };
                    rc.codes.extend(q.iter().map(|&v| v & 0xF));
                    rc.codes.extend(q.iter().map(|&v| v >> 4));
                }
                let sb = if q4_1 {
                    ScaleBits::ScaleMin
                } else {
                    ScaleBits::ScaleOffset(8)
                };
                (CodeBits::Nib4, sb)
            }
            QuantFormat::Q4K | QuantFormat::Q5K => {
                for b in blocks {
                    rc.d.push(f16_bytes(b, 0));
                    rc.dmin.push(f16_bytes(b, 2));
                    let (qh, ql) = if fmt == QuantFormat::Q4K {
                        (None, &b[16..144])
                    } else {
                        (Some(&b[16..48]), &b[48..176])
                    };
                    for sub in 0..8 {
                        let (sc, m) = scale_min_k4(sub, &b[4..16]);
                        rc.sub_scale.push(sc);
                        rc.sub_min.push(m);
                        let src = &ql[32 * (sub / 2)..32 * (sub / 2) + 32];
                        for l in 0..32 {
                            let lo = if sub % 2 == 0 {
                                src[l] & 0xF
                            } else {
                                src[l] >> 4
                            };
                            let hi =
                                qh.map_or(0, |h| if h[l] & (1u8 << sub) != 0 { 16 } else { 0 });
                            rc.codes.push(lo + hi);
                        }
                    }
                }
                let cb = if fmt == QuantFormat::Q4K {
                    CodeBits::Nib4
                } else {
                    CodeBits::Nib4Hi1
                };
                (cb, ScaleBits::Super6)
            }
            QuantFormat::Q8_0 => {
                for b in blocks {
                    rc.d.push(f16_bytes(b, 0));
                    rc.codes
                        .extend(b[2..34].iter().map(|&v| (v as i8 as i16 + 128) as u8));
                }
                (CodeBits::Bytes, ScaleBits::ScaleOffset(128))
            }
            QuantFormat::Q6K => {
                rc.block = 16;
                let mut tmp = [0f32; 256];
                for b in blocks {
                    rc.d.push(f16_bytes(b, 208));
                    // Codes come from the reference dequantizer run with unit scales, so the
                    // bit layout lives in one place only.
                    let mut unit = b.to_vec();
                    unit[192..208].fill(1);
                    unit[208..210].copy_from_slice(&half::f16::ONE.to_le_bytes());
                    crate::quant::dequant_q6k(&unit, &mut tmp);
                    rc.codes.extend(tmp.iter().map(|&v| (v as i32 + 32) as u8));
                    rc.sub_scale.extend_from_slice(&b[192..208]);
                }
                (CodeBits::Nib4Hi2, ScaleBits::SuperI8)
            }
        };
        Ok(Self {
            rows,
            cols,
            act_bits: 16,
            source: fmt,
            data: Packed::Codes(panelize(&rc, rows, cols, codes, scales)),
        })
    }

    /// A dense matrix from row-major f32 values.
    pub fn from_f32(values: Vec<f32>, rows: usize, cols: usize) -> Self {
        Self::from_f32_as(values, rows, cols, QuantFormat::F32)
    }

    fn from_f32_as(values: Vec<f32>, rows: usize, cols: usize, source: QuantFormat) -> Self {
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

/// Lays out `rc` in panels (see `CodePanels`); rows past `rows` are zeros.
fn panelize(
    rc: &RowCodes,
    rows: usize,
    cols: usize,
    codes: CodeBits,
    scales: ScaleBits,
) -> CodePanels {
    let block = rc.block;
    let nb = cols / block;
    let bpg = scales.blocks_per_group();
    let groups = nb / bpg;
    let panels = rows.div_ceil(PANEL);
    let mut out = CodePanels {
        block,
        codes,
        scales,
        max_code: rc.codes.iter().copied().max().unwrap_or(0),
        data: Vec::new(),
    };
    let total = panels * groups * out.group_bytes();
    out.data.reserve_exact(total);
    advise_huge_pages(&out.data);
    let row_or_pad =
        |p: usize, lane: usize| -> Option<usize> { Some(p * PANEL + lane).filter(|&r| r < rows) };
    let d = &mut out.data;
    for p in 0..panels {
        let lanes = || (0..PANEL).map(|l| row_or_pad(p, l));
        for g in 0..groups {
            // Header: per-row f16 values (per block or per super-block), then sub-block bits.
            let hdr_idx = |r: usize| if bpg == 1 { r * nb + g } else { r * groups + g };
            for r in lanes() {
                d.extend_from_slice(&r.map_or([0; 2], |r| rc.d[hdr_idx(r)]));
            }
            if matches!(scales, ScaleBits::ScaleMin | ScaleBits::Super6) {
                for r in lanes() {
                    d.extend_from_slice(&r.map_or([0; 2], |r| rc.dmin[hdr_idx(r)]));
                }
            }
            let sub =
                |v: &[u8], r: Option<usize>, j: usize| r.map_or(0, |r| v[r * nb + g * bpg + j]);
            match scales {
                ScaleBits::Super6 => {
                    for bits in [&rc.sub_scale, &rc.sub_min] {
                        for pair in 0..4 {
                            for r in lanes() {
                                let (a, b) = (sub(bits, r, 2 * pair), sub(bits, r, 2 * pair + 1));
                                d.push((a & 0xF) | ((b & 0xF) << 4));
                            }
                        }
                    }
                    for pair in 0..4 {
                        for r in lanes() {
                            let hi = |v: &[u8], j: usize| sub(v, r, j) >> 4;
                            let (s0, s1) =
                                (hi(&rc.sub_scale, 2 * pair), hi(&rc.sub_scale, 2 * pair + 1));
                            let (m0, m1) =
                                (hi(&rc.sub_min, 2 * pair), hi(&rc.sub_min, 2 * pair + 1));
                            d.push(s0 | (s1 << 2) | (m0 << 4) | (m1 << 6));
                        }
                    }
                }
                ScaleBits::SuperI8 => {
                    for j in 0..bpg {
                        for r in lanes() {
                            d.push(sub(&rc.sub_scale, r, j));
                        }
                    }
                }
                ScaleBits::ScaleMin | ScaleBits::ScaleOffset(_) => {}
            }
            for j in 0..bpg {
                let b = g * bpg + j;
                let code = |r: Option<usize>, kk: usize| {
                    r.map_or(0, |r| rc.codes[r * cols + b * block + kk])
                };
                if codes == CodeBits::Bytes {
                    for v in 0..block / 4 {
                        for r in lanes() {
                            d.extend((0..4).map(|j| code(r, 4 * v + j)));
                        }
                    }
                    continue;
                }
                for v2 in 0..block / 8 {
                    for r in lanes() {
                        d.extend((0..4).map(|j| {
                            (code(r, 8 * v2 + j) & 0xF) | ((code(r, 8 * v2 + 4 + j) & 0xF) << 4)
                        }));
                    }
                }
                if codes != CodeBits::Nib4 {
                    let per = if codes == CodeBits::Nib4Hi1 { 1 } else { 2 };
                    for r in lanes() {
                        d.extend((0..4).map(|j| {
                            (0..block / 4)
                                .map(|v| (code(r, 4 * v + j) >> 4) << (per * v))
                                .fold(0u8, |a, x| a | x)
                        }));
                    }
                }
            }
        }
    }
    debug_assert_eq!(d.len(), total);
    out
}

/// Asks for transparent huge pages over `v`'s allocation before it is first written:
/// decode streams every weight once per token, and with 4-KiB pages that is one TLB miss
/// per page. Only a hint: where THP is off nothing changes.
fn advise_huge_pages(v: &Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, len) = (v.as_ptr() as usize, v.capacity());
        let lo = start.div_ceil(HUGE) * HUGE;
        let hi = (start + len) / HUGE * HUGE;
        if hi > lo {
            // SAFETY: the range lies within `v`'s allocation; MADV_HUGEPAGE changes how
            // pages are backed, never their contents.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
}
