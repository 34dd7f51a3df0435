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
    let layout = KvLayout {
        block_size: bs,
        n_kv_heads: n_kv,
        head_dim: hd,
    };
    let kv = PagedKv {
        k: &k,
        v: &v,
        layout,
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
            let block = |p: usize| table[p / bs] as usize;
            let kat = |p: usize, d: usize| layout.k_index(block(p), kvh, p % bs) + d * bs;
            let vat = |p: usize| layout.v_index(block(p), p % bs, kvh);
            let qv = &q[(row * n_heads + h) * hd..][..hd];
            let s: Vec<f64> = (0..ctx)
                .map(|p| {
                    (0..hd)
                        .map(|d| qv[d] as f64 * k[kat(p, d)] as f64)
                        .sum::<f64>()
                        * 0.25
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = (0..ctx).map(|p| e[p] / z * v[vat(p) + d] as f64).sum();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every head-group and head-size variant of the SIMD kernel against the scalar twin,
    /// with ragged block sizes, scattered blocks and causal rows.
    #[test]
    fn simd_attention_is_bitwise_scalar(
        shape in 0usize..7,
        bs in prop::sample::select(vec![1usize, 3, 16, 20, 32]),
        first_pos in 0usize..90,
        n_rows in 1usize..4,
        seed in 0u64..1000,
    ) {
        let (n_heads, n_kv, hd) = [(9, 3, 64), (4, 4, 64), (8, 2, 64), (4, 2, 128), (6, 3, 32), (2, 1, 48), (3, 1, 128)][shape];
        let layout = KvLayout { block_size: bs, n_kv_heads: n_kv, head_dim: hd };
        let n_ctx = first_pos + n_rows;
        let blocks = n_ctx.div_ceil(bs);
        let n_blocks = blocks + 3;
        // Blocks in a scrambled order, none of them block 0.
        let table: Vec<u32> = (0..blocks).map(|b| ((b * 5 + seed as usize) % blocks + 1) as u32).collect();
        let mut seen = table.clone();
        seen.sort();
        seen.dedup();
        prop_assume!(seen.len() == table.len());
        let k = vals(n_blocks * layout.block_len(), seed, 1.5);
        let v = vals(n_blocks * layout.block_len(), seed + 1, 1.0);
        let q = vals(n_rows * n_heads * hd, seed + 2, 1.5);
        let kv = PagedKv { k: &k, v: &v, layout };
        let seqs = [AttnSeq { block_table: &table, first_row: 0, n_rows, first_pos }];
        let mut got = vec![0f32; q.len()];
        attention(&crate::ThreadPool::new(2), &q, n_heads, &kv, &seqs, 0.125, &mut got);
        let mut want = vec![0f32; q.len()];
        attention::reference_attention(&q, n_heads, &kv, &seqs, 0.125, &mut want);
        prop_assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn kv_layout_stores_rows_where_the_kernels_read_them() {
    let layout = KvLayout {
        block_size: 4,
        n_kv_heads: 2,
        head_dim: 8,
    };
    let mut k = vec![0f32; 3 * layout.block_len()];
    let mut v = vec![0f32; 3 * layout.block_len()];
    let krow: Vec<f32> = (0..16).map(|i| i as f32 + 1.0).collect();
    let vrow: Vec<f32> = (0..16).map(|i| -(i as f32) - 1.0).collect();
    layout.store(&mut k, &mut v, 2, 3, &krow, &vrow);
    for h in 0..2 {
        for d in 0..8 {
            assert_eq!(k[layout.k_index(2, h, 3) + d * 4], krow[h * 8 + d]);
            assert_eq!(v[layout.v_index(2, 3, h) + d], vrow[h * 8 + d]);
        }
    }
    assert_eq!(k.iter().filter(|&&x| x != 0.0).count(), 16);
    assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 16);
}
