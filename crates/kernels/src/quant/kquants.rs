//! The k-quant super-blocks (256 elements) of ggml.

use super::f16_at;

/// 6-bit scale and min of sub-block `j` from the 12 packed scale bytes of Q4_K/Q5_K.
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: d, dmin (f16), 12 scale bytes, 128 nibble bytes.
pub fn dequant_q4k(blk: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let scales = &blk[4..16];
    let qs = &blk[16..144];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, mn1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, mn2) = (d * sc2 as f32, dmin * m2 as f32);
        for l in 0..32 {
            let q = qs[32 * j + l];
            out[64 * j + l] = d1 * (q & 0xF) as f32 - mn1;
            out[64 * j + 32 + l] = d2 * (q >> 4) as f32 - mn2;
        }
    }
}

/// Q5_K: d, dmin, 12 scale bytes, 32 high-bit bytes, 128 nibble bytes.
pub fn dequant_q5k(blk: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let scales = &blk[4..16];
    let qh = &blk[16..48];
    let ql = &blk[48..176];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, mn1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, mn2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        for l in 0..32 {
            let q = ql[32 * j + l];
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[64 * j + l] = d1 * ((q & 0xF) + h1) as f32 - mn1;
            out[64 * j + 32 + l] = d2 * ((q >> 4) + h2) as f32 - mn2;
        }
    }
}

/// Q6_K: 128 low-nibble bytes, 64 high-bit bytes, 16 signed scales, d.
pub fn dequant_q6k(blk: &[u8], out: &mut [f32]) {
    let d = f16_at(blk, 208);
    for half in 0..2 {
        let ql = &blk[64 * half..64 * half + 64];
        let qh = &blk[128 + 32 * half..128 + 32 * half + 32];
        let sc = &blk[192 + 8 * half..192 + 8 * half + 8];
        let o = &mut out[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            o[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            o[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            o[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            o[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
