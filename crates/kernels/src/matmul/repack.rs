//! GGUF's quantized blocks to the kernels' panels (`pack::CodePanels`), a panel of 16 rows
//! at a time: panels are independent, so a model loads on every thread of its pool with
//! no more scratch memory than one panel's codes per task.

use super::pack::{CodeBits, CodePanels, PackedMatrix, ScaleBits, PANEL};
use crate::pool::ThreadPool;
use crate::quant::{scale_min_k4, QuantFormat};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

impl PackedMatrix {
    /// Repacks ggml-encoded `data` (`rows` rows of `cols` elements in `fmt`) on the
    /// calling thread.
    ///
    /// Every quantized format becomes `value = code * scale + min` with an unsigned code,
    /// which is exact: signed codes are offset (Q8_0 by 128, Q6_K by 32, Q4_0 by 8) and
    /// the offset moves into `min`; K-quant sub-block scales times the super-block scale
    /// are exact in f32 (11-bit by 6- or 8-bit products).
    pub fn from_ggml(fmt: QuantFormat, data: &[u8], rows: usize, cols: usize) -> Result<Self> {
        Self::from_ggml_parts(fmt, &[data], rows, cols, None)
    }

    /// Like `from_ggml` for the rows of `parts` stacked in order (tensors of one format
    /// and width, e.g. Q, K and V as one matrix), panels spread over `pool`'s threads.
    pub fn from_ggml_parts(
        fmt: QuantFormat,
        parts: &[&[u8]],
        rows: usize,
        cols: usize,
        pool: Option<&ThreadPool>,
    ) -> Result<Self> {
        let row_bytes = fmt.row_bytes(cols)?;
        let expected = row_bytes * rows;
        let got: usize = parts.iter().map(|p| p.len()).sum();
        if got != expected || parts.iter().any(|p| p.len() % row_bytes.max(1) != 0) {
            return Err(Error::BadSize {
                got,
                expected,
                rows,
                cols,
                fmt: fmt.name(),
            });
        }
        let Some((codes, scales, block)) = code_layout(fmt) else {
            let joined = parts.concat();
            let mut v = vec![0f32; rows * cols];
            crate::quant::dequantize_row(fmt, &joined, &mut v);
            return Ok(Self::from_f32_as(v, rows, cols, fmt));
        };
        let src = RowSource { parts, row_bytes };
        let mut out = CodePanels {
            block,
            codes,
            scales,
            max_code: 0,
            data: Vec::new(),
        };
        let panels = rows.div_ceil(PANEL);
        let panel_bytes = cols / block / scales.blocks_per_group() * out.group_bytes();
        // Zeroed pages come from the kernel untouched: the tasks' writes fault them in,
        // as huge pages where the hint below is honoured.
        out.data = vec![0u8; panels * panel_bytes];
        advise_huge_pages(&out.data);
        let max_code = AtomicU8::new(0);
        let threads = pool.map_or(1, |p| p.threads());
        // A few tasks per thread, so a slow thread (a busy core) is caught up with.
        let per = panels.div_ceil(4 * threads).max(1);
        // Each task's panels, locked only by that task (a lock the borrow checker can
        // see instead of a shared raw pointer).
        let chunks: Vec<Mutex<&mut [u8]>> = out
            .data
            .chunks_mut((per * panel_bytes).max(1))
            .map(Mutex::new)
            .collect();
        let task = |t: usize| {
            let mut chunk = chunks[t].lock().unwrap_or_else(|e| e.into_inner());
            let mut rc = RowCodes::default();
            let mut buf = Vec::with_capacity(panel_bytes);
            for p in t * per..((t + 1) * per).min(panels) {
                let r0 = p * PANEL;
                let r1 = (r0 + PANEL).min(rows);
                decode_rows(fmt, (r0..r1).map(|r| src.row(r)), &mut rc);
                max_code.fetch_max(
                    rc.codes.iter().copied().max().unwrap_or(0),
                    Ordering::Relaxed,
                );
                buf.clear();
                panelize(&rc, r1 - r0, cols, (codes, scales, block), &mut buf);
                // One panel, still in L1/L2: the copy is a sliver of the decode's cost.
                chunk[(p - t * per) * panel_bytes..][..panel_bytes].copy_from_slice(&buf);
            }
        };
        let tasks = panels.div_ceil(per);
        match pool {
            Some(pool) => pool.run(tasks, &task),
            None => (0..tasks).for_each(task),
        }
        drop(chunks);
        out.max_code = max_code.into_inner();
        Ok(Self::from_code_panels(rows, cols, fmt, out))
    }
}

/// The rows of a matrix: `parts` stacked, each a whole number of rows.
struct RowSource<'a> {
    parts: &'a [&'a [u8]],
    row_bytes: usize,
}

impl RowSource<'_> {
    fn row(&self, mut r: usize) -> &[u8] {
        for p in self.parts {
            let n = p.len() / self.row_bytes;
            if r < n {
                return &p[r * self.row_bytes..(r + 1) * self.row_bytes];
            }
            r -= n;
        }
        unreachable!("row past the parts' rows (sizes are checked first)")
    }
}

/// How `fmt`'s codes and scales are stored, and its block: `None` for dense formats.
fn code_layout(fmt: QuantFormat) -> Option<(CodeBits, ScaleBits, usize)> {
    Some(match fmt {
        QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => return None,
        QuantFormat::Q4_0 => (CodeBits::Nib4, ScaleBits::ScaleOffset(8), 32),
        QuantFormat::Q4_1 => (CodeBits::Nib4, ScaleBits::ScaleMin, 32),
        QuantFormat::Q4K => (CodeBits::Nib4, ScaleBits::Super6, 32),
        QuantFormat::Q5K => (CodeBits::Nib4Hi1, ScaleBits::Super6, 32),
        QuantFormat::Q8_0 => (CodeBits::Bytes, ScaleBits::ScaleOffset(128), 32),
        QuantFormat::Q6K => (CodeBits::Nib4Hi2, ScaleBits::SuperI8, 16),
    })
}

/// Codes and scale bits of a panel's rows, before they are laid out.
#[derive(Default)]
struct RowCodes {
    codes: Vec<u8>,
    /// Per row and block (`ScaleMin`, `ScaleOffset`): f16 scale and min; per row and
    /// super-block (`Super6`, `SuperI8`): f16 `d` and `dmin`.
    d: Vec<[u8; 2]>,
    dmin: Vec<[u8; 2]>,
    /// Per row and block (`Super6`, `SuperI8`): the sub-block scale and min bits.
    sub_scale: Vec<u8>,
    sub_min: Vec<u8>,
}

fn f16_bytes(b: &[u8], i: usize) -> [u8; 2] {
    [b[i], b[i + 1]]
}

/// Replaces `rc` with the codes and scale bits of `rows` (quantized formats only).
fn decode_rows<'a>(fmt: QuantFormat, rows: impl Iterator<Item = &'a [u8]>, rc: &mut RowCodes) {
    rc.codes.clear();
    rc.d.clear();
    rc.dmin.clear();
    rc.sub_scale.clear();
    rc.sub_min.clear();
    let (_, bb) = fmt.block();
    let blocks = rows.flat_map(|r| r.chunks_exact(bb));
    match fmt {
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
                    let shift = 4 * (sub % 2);
                    match qh {
                        None => rc.codes.extend(src.iter().map(|&v| (v >> shift) & 0xF)),
                        Some(h) => rc.codes.extend(
                            src.iter()
                                .zip(h)
                                .map(|(&v, &h)| ((v >> shift) & 0xF) | (((h >> sub) & 1) << 4)),
                        ),
                    }
                }
            }
        }
        QuantFormat::Q8_0 => {
            for b in blocks {
                rc.d.push(f16_bytes(b, 0));
                rc.codes
                    .extend(b[2..34].iter().map(|&v| (v as i8 as i16 + 128) as u8));
            }
        }
        QuantFormat::Q6K => {
            let mut tmp = [0f32; 256];
            let mut unit = [0u8; 210];
            for b in blocks {
                rc.d.push(f16_bytes(b, 208));
                // Codes come from the reference dequantizer run with unit scales, so the
                // bit layout lives in one place only.
                unit.copy_from_slice(b);
                unit[192..208].fill(1);
                unit[208..210].copy_from_slice(&half::f16::ONE.to_le_bytes());
                crate::quant::dequant_q6k(&unit, &mut tmp);
                rc.codes.extend(tmp.iter().map(|&v| (v as i32 + 32) as u8));
                rc.sub_scale.extend_from_slice(&b[192..208]);
            }
        }
        QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => {
            unreachable!("dense formats are not decoded to codes")
        }
    }
}

/// Appends the panel of `rc`'s `rows` rows (at most 16, the rest padded with zeros) to
/// `d`, laid out as `CodePanels` says.
fn panelize(
    rc: &RowCodes,
    rows: usize,
    cols: usize,
    (codes, scales, block): (CodeBits, ScaleBits, usize),
    d: &mut Vec<u8>,
) {
    let nb = cols / block;
    let bpg = scales.blocks_per_group();
    let groups = nb / bpg;
    let lanes = || (0..PANEL).map(|l| Some(l).filter(|&l| l < rows));
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
        let sub = |v: &[u8], r: Option<usize>, j: usize| r.map_or(0, |r| v[r * nb + g * bpg + j]);
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
                        let (m0, m1) = (hi(&rc.sub_min, 2 * pair), hi(&rc.sub_min, 2 * pair + 1));
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
            // Each lane's codes of this block (a padding lane's are zeros).
            let lane_codes: [&[u8]; PANEL] = std::array::from_fn(|l| {
                if l < rows {
                    &rc.codes[l * cols + b * block..][..block]
                } else {
                    &ZEROS[..block]
                }
            });
            if codes == CodeBits::Bytes {
                for v in 0..block / 4 {
                    for c in &lane_codes {
                        d.extend_from_slice(&c[4 * v..4 * v + 4]);
                    }
                }
                continue;
            }
            for v2 in 0..block / 8 {
                for c in &lane_codes {
                    let c = &c[8 * v2..8 * v2 + 8];
                    d.extend((0..4).map(|j| (c[j] & 0xF) | ((c[4 + j] & 0xF) << 4)));
                }
            }
            if codes != CodeBits::Nib4 {
                let per = if codes == CodeBits::Nib4Hi1 { 1 } else { 2 };
                for c in &lane_codes {
                    d.extend((0..4).map(|j| {
                        (0..block / 4)
                            .map(|v| (c[4 * v + j] >> 4) << (per * v))
                            .fold(0u8, |a, x| a | x)
                    }));
                }
            }
        }
    }
}

/// The codes of a padding lane (blocks are at most 32 codes).
const ZEROS: [u8; 32] = [0; 32];

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
