use super::*;
use proptest::prelude::*;

fn vals(n: usize, seed: u64, spread: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((((i as u64 + 1) * 2654435761 + seed * 97) % 20001) as f32 - 10000.0) / 10000.0
                * spread
        })
        .collect()
}

#[test]
fn exp_is_accurate_against_f64() {
    let mut worst = 0f64;
    for i in 0..200_000 {
        let x = -87.0 + i as f32 * (175.0 / 200_000.0);
        let got = reference::exp(x) as f64;
        let want = (x as f64).exp();
        worst = worst.max(((got - want) / want).abs());
    }
    assert!(worst < 3e-7, "relative error {worst}");
    assert_eq!(reference::exp(-100.0), 0.0);
}

#[test]
fn rmsnorm_matches_definition() {
    let x = vals(576, 3, 2.0);
    let w = vals(576, 4, 1.0);
    let mut out = vec![0f32; 576];
    rmsnorm(&x, &w, 1e-5, &mut out);
    let ms: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 576.0;
    for i in 0..576 {
        let want = x[i] as f64 / (ms + 1e-5).sqrt() * w[i] as f64;
        assert!((out[i] as f64 - want).abs() < 1e-5 * want.abs().max(1e-3));
    }
}

#[test]
fn attention_over_pages_matches_dense_softmax() {
    let pool = crate::ThreadPool::new(2);
    let (n_heads, n_kv, hd, bs) = (4, 2, 16, 4);
    let n_ctx = 11;
    let table: Vec<u32> = vec![5, 0, 3]; // scattered blocks
    let n_blocks = 6;
    let k = vals(n_blocks * bs * n_kv * hd, 1, 1.0);
    let v = vals(n_blocks * bs * n_kv * hd, 2, 1.0);
    let q = vals(2 * n_heads * hd, 3, 1.0);
    let kv = PagedKv {
        k: &k,
        v: &v,
        block_size: bs,
        n_kv_heads: n_kv,
        head_dim: hd,
    };
    let seqs = [AttnSeq {
        block_table: &table,
        first_row: 0,
        n_rows: 2,
        first_pos: n_ctx - 2,
    }];
    let mut out = vec![0f32; 2 * n_heads * hd];
    attention(&pool, &q, n_heads, &kv, &seqs, 0.25, &mut out);
    for row in 0..2 {
        let ctx = n_ctx - 1 + row;
        for h in 0..n_heads {
            let kvh = h / 2;
            let at = |p: usize| ((table[p / bs] as usize * bs + p % bs) * n_kv + kvh) * hd;
            let qv = &q[(row * n_heads + h) * hd..][..hd];
            let s: Vec<f64> = (0..ctx)
                .map(|p| {
                    (0..hd)
                        .map(|d| qv[d] as f64 * k[at(p) + d] as f64)
                        .sum::<f64>()
                        * 0.25
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = (0..ctx).map(|p| e[p] / z * v[at(p) + d] as f64).sum();
                let got = out[(row * n_heads + h) * hd + d] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "row {row} head {h} dim {d}: {got} vs {want}"
                );
            }
        }
    }
}

proptest! {
    #[test]
    fn simd_exp_is_bitwise_scalar(len in 0usize..70, seed in 0u64..1000, spread in 0.1f32..120.0) {
        let x = vals(len, seed, spread);
        let mut a = x.clone();
        exp_inplace(&mut a);
        let mut b = x.clone();
        reference::exp_inplace(&mut b);
        prop_assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn simd_silu_dot_axpy_are_bitwise_scalar(len in 0usize..100, seed in 0u64..1000) {
        let x = vals(len, seed, 8.0);
        let y = vals(len, seed + 1, 3.0);
        let mut g1 = x.clone();
        silu_mul(&mut g1, &y);
        let mut g2 = x.clone();
        reference::silu_mul(&mut g2, &y);
        prop_assert_eq!(g1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), g2.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        prop_assert_eq!(dot(&x, &y).to_bits(), reference::dot(&x, &y).to_bits());
        let mut a1 = y.clone();
        axpy(0.37, &x, &mut a1);
        let mut a2 = y.clone();
        reference::axpy(0.37, &x, &mut a2);
        prop_assert_eq!(a1, a2);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn inlined_attention_head_is_bitwise_the_generic_arithmetic() {
    if !is_x86_feature_detected!("avx512f") {
        return;
    }
    for (hd, n_ctx, seed) in [
        (64usize, 1usize, 1u64),
        (64, 37, 2),
        (32, 300, 3),
        (128, 17, 4),
    ] {
        let k = vals(n_ctx * hd * 2, seed, 1.0);
        let v = vals(n_ctx * hd * 2, seed + 9, 1.0);
        let q = vals(hd, seed + 5, 1.0);
        // Keys scattered: position p lives at slot (p * 7) % n_ctx of a strided layout.
        let offset = |p: usize| ((p * 7) % n_ctx * 2 + 1) * hd;
        let mut scores = Vec::new();
        let mut got = vec![0f32; hd];
        unsafe {
            super::x86::attend_head(&q, &k, &v, n_ctx, &offset, 0.125, &mut scores, &mut got)
        };
        let mut sc: Vec<f32> = (0..n_ctx)
            .map(|p| reference::dot(&q, &k[offset(p)..offset(p) + hd]) * 0.125)
            .collect();
        let max = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        sc.iter_mut().for_each(|s| *s -= max);
        reference::exp_inplace(&mut sc);
        let inv = (1.0 / sc.iter().map(|&s| s as f64).sum::<f64>()) as f32;
        let mut want = vec![0f32; hd];
        for (p, &w) in sc.iter().enumerate() {
            reference::axpy(w * inv, &v[offset(p)..offset(p) + hd], &mut want);
        }
        assert_eq!(got, want, "hd {hd} n_ctx {n_ctx}");
    }
}
