use crate::quant::{f16_at, scale_min_k4, QuantFormat};
use crate::{Error, Result};

/// A weight matrix (`rows × cols`, row-major) in the layout the kernels read.
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    pub(crate) source: QuantFormat,
    pub(crate) data: Packed,
}

pub(crate) enum Packed {
    F32(Vec<f32>),
    /// 4-bit codes, 32 per block: byte `j` holds element `j` (low nibble) and `j + 16`
    /// (high nibble). Element value = fma(code, scale, min).
    Q4 {
        qs: Vec<u8>,
        scale: Vec<f32>,
        min: Vec<f32>,
    },
    /// 8-bit codes in blocks of `block` elements; value = fma(code, scale, min or 0).
    I8 {
        block: usize,
        qs: Vec<i8>,
        scale: Vec<f32>,
        min: Option<Vec<f32>>,
    },
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

    /// Bytes the kernels stream per full pass over the matrix.
    pub fn packed_bytes(&self) -> usize {
        match &self.data {
            Packed::F32(v) => v.len() * 4,
            Packed::Q4 { qs, scale, min } => qs.len() + 4 * (scale.len() + min.len()),
            Packed::I8 { qs, scale, min, .. } => {
                qs.len() + 4 * (scale.len() + min.as_ref().map_or(0, |m| m.len()))
            }
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
        let packed = match fmt {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => {
                let mut v = vec![0f32; n];
                crate::quant::dequantize_row(fmt, data, &mut v);
                Packed::F32(v)
            }
            QuantFormat::Q4_0 | QuantFormat::Q4_1 => {
                let nb = n / 32;
                let (mut qs, mut scale, mut min) = (
                    Vec::with_capacity(n / 2),
                    Vec::with_capacity(nb),
                    Vec::with_capacity(nb),
                );
                for b in blocks {
                    if fmt == QuantFormat::Q4_0 {
                        let d = f16_at(b, 0);
                        scale.push(d);
                        min.push(-8.0 * d);
                        qs.extend_from_slice(&b[2..18]);
                    } else {
                        scale.push(f16_at(b, 0));
                        min.push(f16_at(b, 2));
                        qs.extend_from_slice(&b[4..20]);
                    }
                }
                Packed::Q4 { qs, scale, min }
            }
            QuantFormat::Q4K => {
                let nb = n / 32;
                let (mut qs, mut scale, mut min) = (
                    Vec::with_capacity(n / 2),
                    Vec::with_capacity(nb),
                    Vec::with_capacity(nb),
                );
                for b in blocks {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let q = &b[16..144];
                    for sub in 0..8 {
                        let (sc, m) = scale_min_k4(sub, &b[4..16]);
                        scale.push(d * sc as f32);
                        min.push(-(dmin * m as f32));
                        let src = &q[32 * (sub / 2)..32 * (sub / 2) + 32];
                        let code = |l: usize| {
                            if sub % 2 == 0 {
                                src[l] & 0xF
                            } else {
                                src[l] >> 4
                            }
                        };
                        for j in 0..16 {
                            qs.push(code(j) | (code(j + 16) << 4));
                        }
                    }
                }
                Packed::Q4 { qs, scale, min }
            }
            QuantFormat::Q8_0 => {
                let mut qs = Vec::with_capacity(n);
                let mut scale = Vec::with_capacity(n / 32);
                for b in blocks {
                    scale.push(f16_at(b, 0));
                    qs.extend(b[2..34].iter().map(|&v| v as i8));
                }
                Packed::I8 {
                    block: 32,
                    qs,
                    scale,
                    min: None,
                }
            }
            QuantFormat::Q5K => {
                let mut qs = Vec::with_capacity(n);
                let (mut scale, mut min) = (Vec::with_capacity(n / 32), Vec::with_capacity(n / 32));
                for b in blocks {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let (qh, ql) = (&b[16..48], &b[48..176]);
                    for sub in 0..8 {
                        let (sc, m) = scale_min_k4(sub, &b[4..16]);
                        scale.push(d * sc as f32);
                        min.push(-(dmin * m as f32));
                        let src = &ql[32 * (sub / 2)..32 * (sub / 2) + 32];
                        let bit = 1u8 << sub;
                        for l in 0..32 {
                            let lo = if sub % 2 == 0 {
                                src[l] & 0xF
                            } else {
                                src[l] >> 4
                            };
                            let hi = if qh[l] & bit != 0 { 16 } else { 0 };
                            qs.push((lo + hi) as i8);
                        }
                    }
                }
                Packed::I8 {
                    block: 32,
                    qs,
                    scale,
                    min: Some(min),
                }
            }
            QuantFormat::Q6K => {
                let mut qs = vec![0i8; n];
                let mut scale = Vec::with_capacity(n / 16);
                let mut tmp = [0f32; 256];
                for (bi, b) in blocks.enumerate() {
                    let d = f16_at(b, 208);
                    // Codes come from the reference dequantizer run with unit scales, so the
                    // bit layout lives in one place only.
                    let mut unit = b.to_vec();
                    unit[192..208].fill(1);
                    unit[208..210].copy_from_slice(&half::f16::ONE.to_le_bytes());
                    crate::quant::dequant_q6k(&unit, &mut tmp);
                    for (dst, &v) in qs[bi * 256..bi * 256 + 256].iter_mut().zip(tmp.iter()) {
                        *dst = v as i8;
                    }
                    for s in 0..16 {
                        scale.push(d * (b[192 + s] as i8) as f32);
                    }
                }
                Packed::I8 {
                    block: 16,
                    qs,
                    scale,
                    min: None,
                }
            }
        };
        Ok(Self {
            rows,
            cols,
            source: fmt,
            data: packed,
        })
    }

    /// A dense matrix from f32 values (tests, tiny models).
    pub fn from_f32(values: Vec<f32>, rows: usize, cols: usize) -> Self {
        assert_eq!(values.len(), rows * cols);
        Self {
            rows,
            cols,
            source: QuantFormat::F32,
            data: Packed::F32(values),
        }
    }

    /// One row dequantized, for embedding lookups.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        super::dequant_rows(self, r, r + 1, out);
    }
}
