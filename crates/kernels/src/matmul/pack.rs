use crate::quant::{f16_at, scale_min_k4, QuantFormat};
use crate::{Error, Result};

/// Weight rows per panel: one 512-bit vector of f32 outputs.
pub const PANEL: usize = 16;

/// A weight matrix (`rows × cols`) in the layout the kernels read: rows are grouped in
/// panels of 16, and within a panel the values are stored k-major, so one vector load
/// yields element `k` of 16 consecutive rows. Rows are padded to whole panels with zeros.
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    pub(crate) source: QuantFormat,
    pub(crate) data: Packed,
}

pub(crate) enum Packed {
    /// `[panel][k][16]` f32.
    F32(Vec<f32>),
    /// Per panel, per 32-element block: 16 f32 scales, 16 f32 mins, then 16 k-pairs of 16
    /// bytes, byte `r` of pair `t` holding row `r`'s codes for `k = 2t` (low nibble) and
    /// `k = 2t + 1` (high nibble). Value = fma(code, scale, min).
    Q4(Vec<u8>),
    /// Per panel, per `block` elements: 16 f32 scales, 16 f32 mins, then `block` rows of
    /// 16 signed codes (one per panel row). Value = fma(code, scale, min).
    I8 { block: usize, data: Vec<u8> },
}

/// Codes, scales and mins of every row, before they are laid out in panels.
struct RowCodes {
    block: usize,
    codes: Vec<i8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

pub(crate) const Q4_BLOCK_BYTES: usize = 128 + 256;

pub(crate) fn i8_block_bytes(block: usize) -> usize {
    128 + 16 * block
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
            Packed::Q4(d) | Packed::I8 { data: d, .. } => d.len(),
        }
    }

    /// Repacks ggml-encoded `data` (`rows` rows of `cols` elements in `fmt`).
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
                    rc.codes.extend(q.iter().map(|&v| (v & 0xF) as i8));
                    rc.codes.extend(q.iter().map(|&v| (v >> 4) as i8));
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
                            rc.codes.push((lo + hi) as i8);
                        }
                    }
                }
            }
            QuantFormat::Q8_0 => {
                for b in blocks {
                    rc.scale.push(f16_at(b, 0));
                    rc.min.push(0.0);
                    rc.codes.extend(b[2..34].iter().map(|&v| v as i8));
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
                    rc.codes.extend(tmp.iter().map(|&v| v as i8));
                    for s in 0..16 {
                        rc.scale.push(d * (b[192 + s] as i8) as f32);
                        rc.min.push(0.0);
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
            data: panelize(&rc, rows, cols, nibbles),
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
        let (p, lane) = (r / PANEL, r % PANEL);
        let k = self.cols;
        let mut panel = vec![0f32; k * PANEL];
        super::dequant_panel(self, p, &mut panel);
        for (kk, o) in out.iter_mut().enumerate().take(k) {
            *o = panel[kk * PANEL + lane];
        }
    }
}

fn push_f32s(out: &mut Vec<u8>, v: impl Iterator<Item = f32>) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn panelize(rc: &RowCodes, rows: usize, cols: usize, nibbles: bool) -> Packed {
    let block = if nibbles { 32 } else { rc.block };
    let nb = cols / block;
    // Scales are per rc.block elements; for nibbles rc.block is 32 as well.
    let per = block / rc.block.min(block);
    debug_assert_eq!(per, 1);
    let panels = rows.div_ceil(PANEL);
    let row_or_pad =
        |p: usize, lane: usize| -> Option<usize> { Some(p * PANEL + lane).filter(|&r| r < rows) };
    let bytes = if nibbles {
        Q4_BLOCK_BYTES
    } else {
        i8_block_bytes(block)
    };
    let mut out = Vec::with_capacity(panels * nb * bytes);
    for p in 0..panels {
        for b in 0..nb {
            let sidx = |r: usize| r * nb + b;
            push_f32s(
                &mut out,
                (0..PANEL).map(|l| row_or_pad(p, l).map_or(0.0, |r| rc.scale[sidx(r)])),
            );
            push_f32s(
                &mut out,
                (0..PANEL).map(|l| row_or_pad(p, l).map_or(0.0, |r| rc.min[sidx(r)])),
            );
            let code = |r: Option<usize>, kk: usize| {
                r.map_or(0i8, |r| rc.codes[r * cols + b * block + kk])
            };
            if nibbles {
                for t in 0..16 {
                    for l in 0..PANEL {
                        let r = row_or_pad(p, l);
                        out.push(
                            (code(r, 2 * t) as u8 & 0xF) | ((code(r, 2 * t + 1) as u8 & 0xF) << 4),
                        );
                    }
                }
            } else {
                for kk in 0..block {
                    for l in 0..PANEL {
                        out.push(code(row_or_pad(p, l), kk) as u8);
                    }
                }
            }
        }
    }
    if nibbles {
        Packed::Q4(out)
    } else {
        Packed::I8 { block, data: out }
    }
}
