//! Reference arithmetic for the SIMD twins in `x86.rs`.

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this exp underflows to 0 in f32; above the upper bound it overflows.
pub(crate) const EXP_LO: f32 = -87.336_55;
pub(crate) const EXP_HI: f32 = 88.376_26;
/// Minimax coefficients of exp(r) on [-ln2/2, ln2/2] (degree 6, Cephes expf).
pub(crate) const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_66,
    0.5,
];

/// exp(x) to about 1 ulp: x = n·ln2 + r, a polynomial in r, then scaling by 2ⁿ.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x < EXP_LO {
        return 0.0;
    }
    let x = x.min(EXP_HI);
    let n = (x * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    let r2 = r * r;
    let y = p.mul_add(r2, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline]
pub fn exp_inplace(x: &mut [f32]) {
    for v in x {
        *v = exp(*v);
    }
}

#[inline]
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (ac, bc) in a.chunks(16).zip(b.chunks(16)) {
        for l in 0..ac.len() {
            acc[l] = ac[l].mul_add(bc[l], acc[l]);
        }
    }
    reduce16(&acc)
}

/// The fixed reduction tree of 16 lanes: halves, quarters, pairs, then the last two.
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut r8 = [0f32; 8];
    for l in 0..8 {
        r8[l] = a[l] + a[l + 8];
    }
    let mut r4 = [0f32; 4];
    for l in 0..4 {
        r4[l] = r8[l] + r8[l + 4];
    }
    let r2 = [r4[0] + r4[2], r4[1] + r4[3]];
    r2[0] + r2[1]
}

pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = a.mul_add(xv, *yv);
    }
}
