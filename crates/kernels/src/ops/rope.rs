//! Rotary position embedding: the angle table of one position (plain, linear-scaled,
//! YaRN, per-pair frequency factors as Llama 3 and Phi-3 store them) and its application
//! to interleaved pairs (ggml's "normal" rope) or to split halves (GPT-NeoX style).

/// Which elements of a head form a rotated pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// `(2i, 2i+1)`: Llama, Mistral, GLM-4.
    Pairs,
    /// `(i, i + dims/2)`: Qwen, Phi-3, Gemma.
    Halves,
}

impl RopeStyle {
    /// Rotates the first `dims` elements of every `head_dim`-long head of `x`
    /// (`cos_sin.len() == dims / 2`); the rest of each head is left as it is.
    pub fn apply(self, x: &mut [f32], head_dim: usize, cos_sin: &[(f32, f32)]) {
        match self {
            Self::Pairs => {
                for head in x.chunks_exact_mut(head_dim) {
                    for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cos_sin) {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * c - b * s;
                        pair[1] = a * s + b * c;
                    }
                }
            }
            Self::Halves => {
                let h = cos_sin.len();
                for head in x.chunks_exact_mut(head_dim) {
                    for (i, &(c, s)) in cos_sin.iter().enumerate() {
                        let (a, b) = (head[i], head[i + h]);
                        head[i] = a * c - b * s;
                        head[i + h] = a * s + b * c;
                    }
                }
            }
        }
    }
}

/// How the angles of one position are formed (ggml's `rope_yarn`, in f64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    /// Rotated dimensions per head (`rope.dimension_count`).
    pub dims: usize,
    pub base: f64,
    /// `1 / factor` of linear or YaRN scaling; 1 for none.
    pub freq_scale: f64,
    /// YaRN's blend of interpolated and extrapolated angles; 0 without YaRN.
    pub ext_factor: f64,
    /// Multiplies cos and sin (YaRN's and LongRoPE's attention factor); 1 for none.
    pub attn_factor: f64,
    /// YaRN's ramp between these pair indices (see [`yarn_corr_dims`]).
    pub corr_dims: [f64; 2],
}

impl RopeParams {
    /// Unscaled rope over `dims` dimensions.
    pub fn plain(dims: usize, base: f64) -> Self {
        Self {
            dims,
            base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            corr_dims: [0.0, 0.0],
        }
    }
}

/// YaRN's correction range: the pair indices whose wavelength spans `beta_fast` and
/// `beta_slow` rotations over the original context (ggml_rope_yarn_corr_dims).
pub fn yarn_corr_dims(
    dims: usize,
    n_ctx_orig: usize,
    base: f64,
    beta_fast: f64,
    beta_slow: f64,
) -> [f64; 2] {
    // ggml computes these in f32; the floor and ceil make the result an integer, so
    // f64 gives the same values except at exact ties.
    let corr = |rot: f64| {
        dims as f64 * (n_ctx_orig as f64 / (rot * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    [
        corr(beta_fast).floor().max(0.0),
        corr(beta_slow).ceil().min(dims as f64 - 1.0),
    ]
}

/// `(cos, sin)` of every rotated pair at `pos`; `factors` divide each pair's angle
/// (Llama 3's `rope_freqs`, Phi-3's long/short factors).
pub fn rope_table(pos: usize, p: &RopeParams, factors: Option<&[f32]>, out: &mut Vec<(f32, f32)>) {
    out.clear();
    let yarn = p.ext_factor != 0.0;
    let mscale = if yarn {
        p.attn_factor * (1.0 + 0.1 * (1.0 / p.freq_scale).ln())
    } else {
        p.attn_factor
    };
    for i in 0..p.dims / 2 {
        let mut extrap = pos as f64 * p.base.powf(-2.0 * i as f64 / p.dims as f64);
        if let Some(f) = factors {
            extrap /= f[i] as f64;
        }
        let interp = p.freq_scale * extrap;
        let theta = if yarn {
            let y = (i as f64 - p.corr_dims[0]) / (p.corr_dims[1] - p.corr_dims[0]).max(0.001);
            let ramp = (1.0 - y.clamp(0.0, 1.0)) * p.ext_factor;
            interp * (1.0 - ramp) + extrap * ramp
        } else {
            interp
        };
        out.push(((theta.cos() * mscale) as f32, (theta.sin() * mscale) as f32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_table_is_the_textbook_angle() {
        let mut t = Vec::new();
        rope_table(7, &RopeParams::plain(8, 10000.0), None, &mut t);
        for (i, &(c, s)) in t.iter().enumerate() {
            let th = 7.0 * 10000f64.powf(-2.0 * i as f64 / 8.0);
            assert!((c as f64 - th.cos()).abs() < 1e-7 && (s as f64 - th.sin()).abs() < 1e-7);
        }
    }

    #[test]
    fn yarn_keeps_fast_pairs_and_interpolates_slow_ones() {
        let dims = 64;
        let corr = yarn_corr_dims(dims, 4096, 10000.0, 32.0, 1.0);
        assert!(corr[0] >= 0.0 && corr[0] < corr[1] && corr[1] <= 63.0);
        let p = RopeParams {
            freq_scale: 0.25,
            ext_factor: 1.0,
            corr_dims: corr,
            ..RopeParams::plain(dims, 10000.0)
        };
        let mut t = Vec::new();
        rope_table(100, &p, None, &mut t);
        let m = 1.0 + 0.1 * 4f64.ln();
        let th0 = 100.0f64;
        assert!(
            (t[0].0 as f64 - th0.cos() * m).abs() < 1e-6,
            "pair 0 extrapolates"
        );
        let last = dims / 2 - 1;
        let th = 100.0 * 10000f64.powf(-2.0 * last as f64 / dims as f64) * 0.25;
        assert!(
            (t[last].1 as f64 - th.sin() * m).abs() < 1e-6,
            "the last pair interpolates"
        );
    }

    #[test]
    fn halves_rotate_only_the_rotary_part() {
        let mut x: Vec<f32> = (0..8).map(|i| i as f32).collect();
        RopeStyle::Halves.apply(&mut x, 8, &[(0.0, 1.0), (0.0, 1.0)]);
        // Pairs (0, 2) and (1, 3) turn by 90°; 4..8 stay.
        assert_eq!(x, vec![-2.0, -3.0, 0.0, 1.0, 4.0, 5.0, 6.0, 7.0]);
        let mut y: Vec<f32> = (0..6).map(|i| i as f32).collect();
        RopeStyle::Pairs.apply(&mut y, 6, &[(0.0, 1.0)]);
        assert_eq!(y, vec![-1.0, 0.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
