use crate::quant::{f16_at, scale_min_k4, QuantFormat};
use crate::{Error, Result};

/// Weight rows per panel: one 512-bit vector of f32 (or i32) outputs.
pub const PANEL: usize = 16;

/// A weight matrix (`rows × cols`) in the layout the kernels read: rows are grouped in
/// panels of 16, padded to whole panels with zeros.
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    pub(crate) source: QuantFormat,
    pub(crate) data: Packed,
}

pub(crate) enum Packed {
    /// `[panel][k][16]` f32: one vector load yields element `k` of 16 rows.
    F32(Vec<f32>),
    /// Unsigned integer codes: value = fma(code, scale, min), per block of 16 or 32.
    Codes(CodePanels),
}

/// Per panel, per block: 16 scales, 16 mins (f16 when every one of the matrix is exactly
/// an f16, as in Q4_0, Q4_1 and Q8_0, else f32: batch-1 decode streams these bytes, so a
/// third less scale traffic is measurable), then the codes in groups laid out for
/// `vpdpbusd`, whose 32-bit lane `r` takes four consecutive codes of row `r`:
/// * nibbles (codes < 16, block 32): four 64-byte groups, byte `4r + j` of group `g`
///   holding row `r`'s code `8g + j` (low nibble) and `8g + 4 + j` (high nibble);
/// * bytes: `block / 4` 64-byte groups, byte `4r + j` of group `g` holding code `4g + j`.
pub(crate) struct CodePanels {
    pub block: usize,
    pub nibbles: bool,
    pub half_scales: bool,
    /// The largest code, which decides how the AVX2 kernel may multiply.
    pub max_code: u8,
    pub data: Vec<u8>,
}

impl CodePanels {
    /// Bytes of the 16 scales and 16 mins of a block; the codes follow them.
    pub fn scale_bytes(&self) -> usize {
        if self.half_scales {
            64
        } else {
            128
        }
    }
    pub fn block_bytes(&self) -> usize {
        self.scale_bytes() + self.code_bytes()
    }
    pub fn code_bytes(&self) -> usize {
        if self.nibbles {
            self.block * PANEL / 2
        } else {
            self.block * PANEL
        }
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
        assert!(acts.k == k && acts.block == self.block && acts.hi.len() >= m * k);
        assert!(acts.lo.len() >= m * k && acts.scale.len() >= m * (k / self.block));
        assert!(y_len >= m * n && self.data.len() >= p1 * (k / self.block) * self.block_bytes());
        assert!(!self.nibbles || self.block == 32);
    }

    /// Byte offset of block `b` of panel `p` in a matrix of `nb` blocks per row.
    pub fn block_at(&self, p: usize, nb: usize, b: usize) -> usize {
        (p * nb + b) * self.block_bytes()
    }
    fn scale_or_min(&self, at: usize, lane: usize) -> f32 {
        if self.half_scales {
            half::f16::from_le_bytes([self.data[at + 2 * lane], self.data[at + 2 * lane + 1]])
                .to_f32()
        } else {
            f32_at(&self.data, at + 4 * lane)
        }
    }
    pub fn scale(&self, at: usize, lane: usize) -> f32 {
        self.scale_or_min(at, lane)
    }
    pub fn min(&self, at: usize, lane: usize) -> f32 {
        self.scale_or_min(at + self.scale_bytes() / 2, lane)
    }
    /// Code `kk` (within the block) of panel row `lane`, for the block at byte `at`.
    pub fn code(&self, at: usize, lane: usize, kk: usize) -> u8 {
        let c = at + self.scale_bytes();
        if self.nibbles {
            let byte = self.data[c + (kk / 8) * 64 + 4 * lane + kk % 4];
            if kk % 8 < 4 {
                byte & 0xF
            } else {
                byte >> 4
            }
        } else {
            self.data[c + (kk / 4) * 64 + 4 * lane + kk % 4]
        }
    }
}

pub(crate) fn f32_at(d: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Codes, scales and mins of every row, before they are laid out in panels.
struct RowCodes {
    block: usize,
    codes: Vec<u8>,
    scale: Vec<f32>,
    min: Vec<f32>,
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
        let mut rc = RowCodes {
            block: 32,
            codes: Vec::with_capacity(n),
            scale: Vec::with_capacity(n / 16),
            min: Vec::with_capacity(n / 16),
        };
        match fmt {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => {
                let mut v = vec![0f32; n];
                crate::quant::dequantize_row(fmt, data, &mut v);
                return Ok(Self::from_f32_as(v, rows, cols, fmt));
            }
            QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
                for b in blocks {
                    let (d, m, q) = if fmt == QuantFormat::Q4_0 {
                        (f16_at(b, 0), -8.0 * f16_at(b, 0), &b[2..18])
                    } else {
                        (f16_at(b, 0), f16_at(b, 2), &b[4..20])
                    };
                    rc.scale.push(d);
                    rc.min.push(m);
                    rc.codes.extend(q.iter().map(|&v| v & 0xF));
                    rc.codes.extend(q.iter().map(|&v| v >> 4));
                }
            }
            QuantFormat::Q4K | QuantFormat::Q5K => {
                for b in blocks {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let (qh, ql) = if fmt == QuantFormat::Q4K {
                        (None, &b[16..144])
                    } else {
                        (Some(&b[16..48]), &b[48..176])
                    };
                    for sub in 0..8 {
                        let (sc, m) = scale_min_k4(sub, &b[4..16]);
                        rc.scale.push(d * sc as f32);
                        rc.min.push(-(dmin * m as f32));
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
            }
            QuantFormat::Q8_0 => {
                for b in blocks {
                    let d = f16_at(b, 0);
                    rc.scale.push(d);
                    rc.min.push(-128.0 * d);
                    rc.codes
                        .extend(b[2..34].iter().map(|&v| (v as i8 as i16 + 128) as u8));
                }
            }
            QuantFormat::Q6K => {
                rc.block = 16;
                let mut tmp = [0f32; 256];
                for b in blocks {
                    let d = f16_at(b, 208);
                    // Codes come from the reference dequantizer run with unit scales, so the
                    // bit layout lives in one place only.
                    let mut unit = b.to_vec();
                    unit[192..208].fill(1);
                    unit[208..210].copy_from_slice(&half::f16::ONE.to_le_bytes());
                    crate::quant::dequant_q6k(&unit, &mut tmp);
                    rc.codes.extend(tmp.iter().map(|&v| (v as i32 + 32) as u8));
                    for s in 0..16 {
                        let scale = d * (b[192 + s] as i8) as f32;
                        rc.scale.push(scale);
                        rc.min.push(-32.0 * scale);
                    }
                }
            }
        }
        let nibbles = matches!(
            fmt,
            QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q4K
        );
        Ok(Self {
            rows,
            cols,
            source: fmt,
            data: Packed::Codes(panelize(&rc, rows, cols, nibbles)),
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

fn push_scales(out: &mut Vec<u8>, v: impl Iterator<Item = f32>, half_scales: bool) {
    for x in v {
        if half_scales {
            out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Whether `x` survives a round trip through f16 bit for bit.
fn is_f16(x: f32) -> bool {
    half::f16::from_f32(x).to_f32().to_bits() == x.to_bits()
}

fn panelize(rc: &RowCodes, rows: usize, cols: usize, nibbles: bool) -> CodePanels {
    let block = rc.block;
    debug_assert!(!nibbles || block == 32);
    let nb = cols / block;
    let panels = rows.div_ceil(PANEL);
    let half_scales = rc.scale.iter().chain(&rc.min).all(|&x| is_f16(x));
    let mut out = CodePanels {
        block,
        nibbles,
        half_scales,
        max_code: rc.codes.iter().copied().max().unwrap_or(0),
        data: Vec::new(),
    };
    out.data.reserve(panels * nb * out.block_bytes());
    let row_or_pad =
        |p: usize, lane: usize| -> Option<usize> { Some(p * PANEL + lane).filter(|&r| r < rows) };
    for p in 0..panels {
        for b in 0..nb {
            let sidx = |r: usize| r * nb + b;
            let d = &mut out.data;
            push_scales(
                d,
                (0..PANEL).map(|l| row_or_pad(p, l).map_or(0.0, |r| rc.scale[sidx(r)])),
                half_scales,
            );
            push_scales(
                d,
                (0..PANEL).map(|l| row_or_pad(p, l).map_or(0.0, |r| rc.min[sidx(r)])),
                half_scales,
            );
            let code =
                |r: Option<usize>, kk: usize| r.map_or(0, |r| rc.codes[r * cols + b * block + kk]);
            if nibbles {
                for g in 0..block / 8 {
                    for l in 0..PANEL {
                        let r = row_or_pad(p, l);
                        for j in 0..4 {
                            d.push(code(r, 8 * g + j) | (code(r, 8 * g + 4 + j) << 4));
                        }
                    }
                }
            } else {
                for g in 0..block / 4 {
                    for l in 0..PANEL {
                        let r = row_or_pad(p, l);
                        for j in 0..4 {
                            d.push(code(r, 4 * g + j));
                        }
                    }
                }
            }
        }
    }
    out
}
