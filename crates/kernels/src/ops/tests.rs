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

/// A layer's storage with every slot of every block stored from `k` and `v` rows (one
/// `n_kv_heads * head_dim` row per block-slot, block-major).
fn stored(layout: &KvLayout, n_blocks: usize, k: &[f32], v: &[f32]) -> LayerKv {
    let mut kv = LayerKv::new(layout, n_blocks);
    let w = layout.n_kv_heads * layout.head_dim;
    for b in 0..n_blocks {
        for s in 0..layout.block_size {
            let r = (b * layout.block_size + s) * w;
            kv.store(layout, b, s, &k[r..r + w], &v[r..r + w]);
        }
    }
    kv
}

#[test]
fn attention_over_pages_matches_dense_softmax() {
    dense_check(&AttnParams::scaled(0.25));
}

#[test]
fn windowed_and_soft_capped_attention_match_their_definitions() {
    for window in [1, 4, 9, 100] {
        dense_check(&AttnParams {
            scale: 0.25,
            softcap: None,
            window: Some(window),
        });
    }
    dense_check(&AttnParams {
        scale: 0.25,
        softcap: Some(0.7),
        window: Some(6),
    });
}

/// The kernel against the dense f64 definition: keys `max(0, p-window+1)..=p`, scores
/// `cap * tanh(s / cap)` when capped.
fn dense_check(params: &AttnParams) {
    let pool = crate::ThreadPool::new(2);
    let (n_heads, n_kv, hd, bs) = (4, 2, 16, 4);
    let n_ctx = 11;
    let table: Vec<u32> = vec![5, 0, 3]; // scattered blocks
    let n_blocks = 6;
    let layout = KvLayout {
        block_size: bs,
        n_kv_heads: n_kv,
        head_dim: hd,
    };
    let w = n_kv * hd;
    let k = vals(n_blocks * bs * w, 1, 2.0);
    let v = vals(n_blocks * bs * w, 2, 1.0);
    let q = vals(2 * n_heads * hd, 3, 1.0);
    let store = stored(&layout, n_blocks, &k, &v);
    let seqs = [AttnSeq {
        block_table: &table,
        first_row: 0,
        n_rows: 2,
        first_pos: n_ctx - 2,
    }];
    let mut out = vec![0f32; 2 * n_heads * hd];
    attention(
        &pool,
        &q,
        n_heads,
        &store.paged(layout),
        &seqs,
        params,
        &mut out,
    );
    // The dense f64 computation on the f32 values before they were stored as codes.
    let row_of = |p: usize| (table[p / bs] as usize * bs + p % bs) * w;
    for row in 0..2 {
        let ctx = n_ctx - 1 + row;
        let first = params.window.map_or(0, |w| ctx.saturating_sub(w));
        for h in 0..n_heads {
            let kvh = h / 2;
            let qv = &q[(row * n_heads + h) * hd..][..hd];
            let s: Vec<f64> = (first..ctx)
                .map(|p| {
                    let s = (0..hd)
                        .map(|d| qv[d] as f64 * k[row_of(p) + kvh * hd + d] as f64)
                        .sum::<f64>()
                        * params.scale as f64;
                    match params.softcap {
                        Some(c) => c as f64 * (s / c as f64).tanh(),
                        None => s,
                    }
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = (first..ctx)
                    .map(|p| e[p - first] / z * v[row_of(p) + kvh * hd + d] as f64)
                    .sum();
                let got = out[(row * n_heads + h) * hd + d] as f64;
                // Codes are within amax/65534 of each value: a few 1e-5 on these scores.
                assert!(
                    (got - want).abs() < 1e-4,
                    "row {row} head {h} dim {d}: {got} vs {want}"
                );
            }
        }
    }
}

/// Values the random proptest seldom draws: non-finite inputs, both ends of the range,
/// signed zeros, and the tie points of the rounding to the nearest power of two.
#[test]
fn simd_exp_and_silu_are_bitwise_scalar_at_the_edges() {
    let mut x = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        scalar::EXP_LO,
        scalar::EXP_LO - 1e-5,
        scalar::EXP_HI,
        scalar::EXP_HI + 1.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
    ];
    x.extend((-6..=6).map(|i| (i as f32 + 0.5) * std::f32::consts::LN_2));
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (mut a, mut b) = (x.clone(), x.clone());
    exp_inplace(&mut a);
    reference::exp_inplace(&mut b);
    assert_eq!(bits(&a), bits(&b), "exp of {x:?}");
    let up = vals(x.len(), 5, 2.0);
    let (mut a, mut b) = (x.clone(), x.clone());
    silu_mul(&mut a, &up);
    reference::silu_mul(&mut b, &up);
    assert_eq!(bits(&a), bits(&b), "silu of {x:?}");
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
    /// with ragged block sizes, scattered blocks, causal rows, sliding windows and soft
    /// caps.
    #[test]
    fn simd_attention_is_bitwise_scalar(
        shape in 0usize..13,
        bs in prop::sample::select(vec![1usize, 3, 16, 20, 32]),
        first_pos in 0usize..90,
        n_rows in 1usize..4,
        seed in 0u64..1000,
        window in prop::sample::select(vec![None, Some(1usize), Some(5), Some(17), Some(40)]),
        softcap in prop::sample::select(vec![None, Some(2.5f32)]),
    ) {
        let (n_heads, n_kv, hd) = [(9, 3, 64), (4, 4, 64), (8, 2, 64), (4, 2, 128), (6, 3, 32), (2, 1, 48), (3, 1, 128), (4, 2, 96), (2, 2, 96), (2, 1, 256), (12, 3, 32), (9, 3, 32), (2, 2, 48)][shape];
        // Not a power of two, so that the order of the two score roundings shows.
        let params = AttnParams { scale: 0.13, softcap, window };
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
        let store = stored(&layout, n_blocks, &k, &v);
        let kv = store.paged(layout);
        let seqs = [AttnSeq { block_table: &table, first_row: 0, n_rows, first_pos }];
        let mut got = vec![0f32; q.len()];
        attention(&crate::ThreadPool::new(2), &q, n_heads, &kv, &seqs, &params, &mut got);
        let mut want = vec![0f32; q.len()];
        attention::reference_attention(&q, n_heads, &kv, &seqs, &params, &mut want);
        prop_assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

/// Contexts of many blocks against the scalar twin: the AVX2 kernel reads V a tile of
/// blocks at a time and requests K and V blocks ahead, so windows that start inside a
/// block of a later tile, and contexts ending inside a tile, must give the twin's bits.
#[test]
fn long_contexts_across_v_tiles_are_bitwise_scalar() {
    for (n_heads, n_kv, hd) in [(8, 2, 64), (4, 2, 128), (2, 1, 48), (12, 3, 32)] {
        for bs in [1, 3, 16] {
            for window in [None, Some(100), Some(251)] {
                let params = AttnParams {
                    scale: 0.13,
                    softcap: None,
                    window,
                };
                let layout = KvLayout {
                    block_size: bs,
                    n_kv_heads: n_kv,
                    head_dim: hd,
                };
                let (first_pos, n_rows): (usize, usize) = (298, 3);
                let blocks = (first_pos + n_rows).div_ceil(bs);
                // Scattered blocks, none of them block 0.
                let table: Vec<u32> = (0..blocks)
                    .map(|b| ((b * 11) % blocks + 1) as u32)
                    .collect();
                let n_blocks = blocks + 1;
                let k = vals(n_blocks * layout.block_len(), 5, 1.5);
                let v = vals(n_blocks * layout.block_len(), 6, 1.0);
                let q = vals(n_rows * n_heads * hd, 7, 1.5);
                let store = stored(&layout, n_blocks, &k, &v);
                let kv = store.paged(layout);
                let seqs = [AttnSeq {
                    block_table: &table,
                    first_row: 0,
                    n_rows,
                    first_pos,
                }];
                let mut got = vec![0f32; q.len()];
                attention(
                    &crate::ThreadPool::new(2),
                    &q,
                    n_heads,
                    &kv,
                    &seqs,
                    &params,
                    &mut got,
                );
                let mut want = vec![0f32; q.len()];
                attention::reference_attention(&q, n_heads, &kv, &seqs, &params, &mut want);
                for i in 0..q.len() {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "heads {n_heads}/{n_kv} of {hd}, blocks of {bs}, window {window:?}, at {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn kv_layout_stores_rows_where_the_kernels_read_them() {
    let layout = KvLayout {
        block_size: 4,
        n_kv_heads: 2,
        head_dim: 8,
    };
    let mut kv = LayerKv::new(&layout, 3);
    let krow: Vec<f32> = (0..16).map(|i| (i as f32 + 1.0) * 0.37).collect();
    let vrow: Vec<f32> = (0..16).map(|i| -(i as f32) - 1.0).collect();
    kv.store(&layout, 2, 3, &krow, &vrow);
    for h in 0..2 {
        let (ks, vs) = (
            kv.k_scale[layout.scale_index(2, h, 3)],
            kv.v_scale[layout.scale_index(2, h, 3)],
        );
        let (kmax, vmax) = (krow[h * 8 + 7].abs(), vrow[h * 8 + 7].abs());
        assert_eq!((ks, vs), (kmax / 32767.0, vmax / 32767.0));
        for d in 0..8 {
            let kc = kv.k[layout.k_index(2, h, 3) + d * 4] as f32;
            let vc = kv.v[layout.v_index(2, 3, h) + d] as f32;
            assert!((kc * ks - krow[h * 8 + d]).abs() <= kmax / 65534.0 * 1.001);
            assert!((vc * vs - vrow[h * 8 + d]).abs() <= vmax / 65534.0 * 1.001);
        }
    }
    assert_eq!(kv.k.iter().filter(|&&x| x != 0).count(), 16);
    assert_eq!(kv.v.iter().filter(|&&x| x != 0).count(), 16);
    assert_eq!(kv.k_scale.iter().filter(|&&x| x != 0.0).count(), 2);

    // A prefix copy moves codes and scales together.
    kv.copy_prefix(&layout, 2, 0, 4);
    for h in 0..2 {
        assert_eq!(
            kv.k_scale[layout.scale_index(0, h, 3)],
            kv.k_scale[layout.scale_index(2, h, 3)]
        );
        assert_eq!(
            kv.v[layout.v_index(0, 3, h)..layout.v_index(0, 3, h) + 8],
            kv.v[layout.v_index(2, 3, h)..layout.v_index(2, 3, h) + 8]
        );
        for d in 0..8 {
            assert_eq!(
                kv.k[layout.k_index(0, h, 3) + d * 4],
                kv.k[layout.k_index(2, h, 3) + d * 4]
            );
        }
    }

    // A partial copy moves every head's first slots and leaves the rest of the block.
    kv.store(&layout, 2, 0, &vrow, &krow);
    kv.copy_prefix(&layout, 2, 1, 1);
    for h in 0..2 {
        let (src, dst) = (layout.v_index(2, 0, h), layout.v_index(1, 0, h));
        assert_eq!(kv.v[dst..dst + 8], kv.v[src..src + 8], "head {h}");
        assert!(
            kv.v[dst + 8..dst + 3 * 8].iter().all(|&c| c == 0),
            "head {h}"
        );
        assert_eq!(
            kv.v_scale[layout.scale_index(1, h, 0)],
            kv.v_scale[layout.scale_index(2, h, 0)]
        );
        for d in 0..8 {
            let (src, dst) = (layout.k_index(2, h, 0), layout.k_index(1, h, 0));
            assert_eq!(kv.k[dst + d * 4], kv.k[src + d * 4]);
            assert_eq!(kv.k[dst + d * 4 + 1], 0);
        }
    }
}

#[test]
fn a_non_finite_head_carries_nan_and_a_zero_head_stays_zero() {
    let layout = KvLayout {
        block_size: 2,
        n_kv_heads: 2,
        head_dim: 16,
    };
    let mut kv = LayerKv::new(&layout, 1);
    let mut k = vec![0.5f32; 32];
    k[3] = f32::INFINITY;
    k[16..].fill(0.0);
    kv.store(&layout, 0, 1, &k, &[0.25; 32]);
    assert!(kv.k_scale[layout.scale_index(0, 0, 1)].is_nan());
    assert_eq!(kv.k_scale[layout.scale_index(0, 1, 1)], 0.0);
    assert_eq!(kv.v_scale[layout.scale_index(0, 1, 1)], 0.25 / 32767.0);
}
