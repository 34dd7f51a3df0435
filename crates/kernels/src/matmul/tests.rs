use super::*;
use crate::quant::{dequantize_row, QuantFormat};
use proptest::prelude::*;

/// Random bytes of a valid encoding: f16 scales are forced finite and modest.
fn random_ggml(fmt: QuantFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (be, bb) = fmt.block();
    let nblocks = rows * cols / be;
    let mut out = Vec::with_capacity(nblocks * bb);
    let small_f16 =
        |r: u64| half::f16::from_f32(((r % 2000) as f32 - 1000.0) / 16000.0).to_le_bytes();
    for _ in 0..nblocks {
        let mut b: Vec<u8> = (0..bb).map(|_| next() as u8).collect();
        match fmt {
            QuantFormat::F32 => {
                b.copy_from_slice(&(((next() % 2000) as f32 - 1000.0) / 500.0).to_le_bytes())
            }
            QuantFormat::F16
            | QuantFormat::Q4_0
            | QuantFormat::Q4_1
            | QuantFormat::Q8_0
            | QuantFormat::Q4K
            | QuantFormat::Q5K => {
                b[0..2].copy_from_slice(&small_f16(next()));
                if matches!(fmt, QuantFormat::Q4_1 | QuantFormat::Q4K | QuantFormat::Q5K) {
                    b[2..4].copy_from_slice(&small_f16(next()));
                }
            }
            QuantFormat::BF16 => b.copy_from_slice(
                &half::bf16::from_f32(((next() % 200) as f32 - 100.0) / 50.0).to_le_bytes(),
            ),
            QuantFormat::Q6K => b[208..210].copy_from_slice(&small_f16(next())),
        }
        out.extend_from_slice(&b);
    }
    out
}

const FORMATS: [QuantFormat; 9] = [
    QuantFormat::F32,
    QuantFormat::F16,
    QuantFormat::BF16,
    QuantFormat::Q4_0,
    QuantFormat::Q4_1,
    QuantFormat::Q8_0,
    QuantFormat::Q4K,
    QuantFormat::Q5K,
    QuantFormat::Q6K,
];

fn x_rows(m: usize, k: usize, seed: u64) -> Vec<f32> {
    (0..m * k)
        .map(|i| (((i as u64 * 2654435761 + seed) % 1000) as f32 - 500.0) / 250.0)
        .collect()
}

#[test]
fn packed_values_match_ggml_reference_for_every_format() {
    for fmt in FORMATS {
        let (rows, cols) = (19, 512);
        let data = random_ggml(fmt, rows, cols, 7);
        let w = PackedMatrix::from_ggml(fmt, &data, rows, cols).unwrap();
        let mut want = vec![0f32; rows * cols];
        dequantize_row(fmt, &data, &mut want);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.row_f32(r, &mut row);
            for (i, (a, b)) in row.iter().zip(&want[r * cols..]).enumerate() {
                // Packing computes code*scale+min with one rounding (fma), ggml with two.
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{fmt:?} row {r} elem {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// The integer path's only approximation is the 16-bit activation codes: each value is
/// off by at most half a step (`amax / 65024` of its block), so each output is off by at
/// most `Σ |w| · step / 2`, plus f32 rounding.
#[test]
fn matmul_matches_a_float64_product_within_the_activation_rounding() {
    for (bits, steps) in [(16u8, 65024.0), (8, 254.0)] {
        for fmt in [
            QuantFormat::Q4K,
            QuantFormat::Q4_1,
            QuantFormat::Q8_0,
            QuantFormat::Q6K,
        ] {
            let (n, k, m) = (21, 256, 5);
            let data = random_ggml(fmt, n, k, 3);
            let mut w = PackedMatrix::from_ggml(fmt, &data, n, k).unwrap();
            w.set_activation_bits(bits);
            let mut wf = vec![0f32; n * k];
            dequantize_row(fmt, &data, &mut wf);
            let x = x_rows(m, k, 1);
            let mut y = vec![0f32; m * n];
            matmul(&ThreadPool::new(2), &w, &x, m, &mut y);
            let block = if fmt == QuantFormat::Q6K { 16 } else { 32 };
            for i in 0..m {
                let xi = &x[i * k..(i + 1) * k];
                for j in 0..n {
                    let wj = &wf[j * k..(j + 1) * k];
                    let want: f64 = (0..k).map(|kk| xi[kk] as f64 * wj[kk] as f64).sum();
                    let scale: f64 = (0..k).map(|kk| (xi[kk] as f64 * wj[kk] as f64).abs()).sum();
                    let mut bound = 0f64;
                    for (xb, wb) in xi.chunks(block).zip(wj.chunks(block)) {
                        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                        let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
                        let absum: f64 = xb.iter().zip(wb).map(|(a, b)| (a * b).abs() as f64).sum();
                        bound += wsum * amax / steps * 1.001 + absum * 1e-6;
                    }
                    let err = (y[i * n + j] as f64 - want).abs();
                    assert!(
                        err <= bound,
                        "{fmt:?} {bits}-bit {i},{j}: error {err} > bound {bound}"
                    );
                    let tight = if bits == 16 { 1e-3 } else { 0.3 };
                    assert!(
                        bound < tight * scale,
                        "{fmt:?} {i},{j}: loose bound {bound} for {scale}"
                    );
                }
            }
        }
    }
}

/// Batch-1 decode streams the packed bytes, so they must be GGUF's own: no wider scales,
/// no split super-blocks (rows pad to whole panels of 16 only).
#[test]
fn packed_quantized_matrices_are_exactly_the_ggml_size() {
    for fmt in &FORMATS[3..] {
        for rows in [16, 48, 37] {
            let cols = 512;
            let data = random_ggml(*fmt, rows, cols, 11);
            let w = PackedMatrix::from_ggml(*fmt, &data, rows, cols).unwrap();
            let padded = rows.div_ceil(PANEL) * PANEL;
            assert_eq!(
                w.packed_bytes(),
                padded * fmt.row_bytes(cols).unwrap(),
                "{fmt:?} {rows}x{cols}"
            );
        }
    }
}

/// Loading packs a matrix's panels on every thread of the pool, from stacked tensors
/// (fused Q/K/V) whose boundaries need not fall on panels: the result must be exactly
/// what one thread packs from the tensors joined.
#[test]
fn stacked_parts_packed_on_a_pool_equal_the_joined_matrix_packed_alone() {
    let pool = ThreadPool::new(3);
    let cols = 512;
    // 15 panels: two per task on 3 threads, and part boundaries inside panels.
    let rows_of = |i: usize| [149, 64, 21][i];
    let total = 234;
    for fmt in FORMATS {
        let parts: Vec<Vec<u8>> = (0..3)
            .map(|i| random_ggml(fmt, rows_of(i), cols, 20 + i as u64))
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let alone = PackedMatrix::from_ggml(fmt, &parts.concat(), total, cols).unwrap();
        let pooled = PackedMatrix::from_ggml_parts(fmt, &refs, total, cols, Some(&pool)).unwrap();
        match (&alone.data, &pooled.data) {
            (Packed::Codes(a), Packed::Codes(b)) => {
                assert!(a.data == b.data, "{fmt:?}: packed bytes differ");
                assert_eq!(a.max_code, b.max_code, "{fmt:?}");
            }
            (Packed::F32(a), Packed::F32(b)) => assert!(a == b, "{fmt:?}: values differ"),
            _ => panic!("{fmt:?}: packed as different kinds"),
        }
        // And both are the ggml values (one thread's bugs would be in both).
        let mut want = vec![0f32; total * cols];
        dequantize_row(fmt, &parts.concat(), &mut want);
        let mut got = vec![0f32; cols];
        for r in 0..total {
            pooled.row_f32(r, &mut got);
            for (a, b) in got.iter().zip(&want[r * cols..]) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{fmt:?} row {r}");
            }
        }
    }
    // The largest code (which picks the AVX2 kernel's arithmetic for Q8_0) is the whole
    // matrix's, though only the last part's last row holds it.
    let q8 = QuantFormat::Q8_0;
    let mut parts: Vec<Vec<u8>> = (0..3)
        .map(|i| random_ggml(q8, rows_of(i), cols, 5))
        .collect();
    for p in &mut parts {
        for b in p.chunks_exact_mut(34) {
            b[2..].fill(-100i8 as u8);
        }
    }
    let last = parts[2].len() - 1;
    parts[2][last] = 127;
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let w = PackedMatrix::from_ggml_parts(q8, &refs, total, cols, Some(&pool)).unwrap();
    let Packed::Codes(c) = &w.data else {
        panic!("Q8_0 packed as floats")
    };
    assert_eq!(c.max_code, 255);
    // A part that is not a whole number of rows is refused, even when the sizes add up.
    let row = QuantFormat::Q4_0.row_bytes(cols).unwrap();
    let data = random_ggml(QuantFormat::Q4_0, 2, cols, 1);
    let (a, b) = data.split_at(row + 2);
    assert!(
        PackedMatrix::from_ggml_parts(QuantFormat::Q4_0, &[a, b], 2, cols, Some(&pool)).is_err()
    );
    assert!(
        PackedMatrix::from_ggml_parts(QuantFormat::Q4_0, &[&data[..row]], 2, cols, None).is_err()
    );
}

#[test]
fn wrong_sizes_and_ragged_rows_are_errors() {
    assert!(PackedMatrix::from_ggml(QuantFormat::Q4_1, &[0u8; 19], 1, 32).is_err());
    assert!(PackedMatrix::from_ggml(QuantFormat::Q4_1, &[0u8; 20], 1, 33).is_err());
}

/// Rows long enough that a task of four panels (8 panels over 2 threads) decodes its
/// K-quant scales one or two panels at a time (the proptest's short rows fit one chunk),
/// and widens codes two panels at a time, with batches of one to twelve row tiles
/// (byte kernels below 32 rows for Q4_K, word kernels from 9 for Q5_K and 32 for Q4_K;
/// on AVX2 without VNNI, words from 9 for Q5_K and 21 for Q4_K, a panel at a time).
#[test]
fn long_k_quant_rows_match_scalar_bitwise() {
    let pool = ThreadPool::new(2);
    for (fmt, n, k) in [(QuantFormat::Q4K, 128, 8192), (QuantFormat::Q5K, 120, 4096)] {
        let data = random_ggml(fmt, n, k, 5);
        let mut w = PackedMatrix::from_ggml(fmt, &data, n, k).unwrap();
        for bits in [16, 8] {
            w.set_activation_bits(bits);
            for m in [1, 9, 21, 32, 67] {
                let x = x_rows(m, k, 3);
                let mut y = vec![0f32; m * n];
                matmul(&pool, &w, &x, m, &mut y);
                let mut want = vec![0f32; m * n];
                reference::matmul(&w, &x, m, &mut want);
                for i in 0..m * n {
                    assert_eq!(
                        y[i].to_bits(),
                        want[i].to_bits(),
                        "{fmt:?} m{m} k{k} at {i}"
                    );
                }
            }
        }
    }
}

/// The AVX2 kernel adds `vpmaddubsw` results as 16-bit words before widening them
/// (`avx2::word_sums`): at every format's largest codes, against activation bytes of the
/// largest magnitude (`lo = -128`, `hi = ±127`), the words must not wrap; nor may the
/// word kernel's 32-bit sums.
#[test]
fn avx2_word_sums_stay_exact_at_the_largest_codes_and_activations() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            return;
        }
        // Per format: the byte range of each block holding codes, and the byte that
        // makes every code there the largest.
        let cases: [(QuantFormat, std::ops::Range<usize>, u8); 6] = [
            (QuantFormat::Q4_0, 2..18, 0xFF),
            (QuantFormat::Q4_1, 4..20, 0xFF),
            (QuantFormat::Q8_0, 2..34, 0x7F),
            (QuantFormat::Q4K, 16..144, 0xFF),
            (QuantFormat::Q5K, 16..176, 0xFF),
            (QuantFormat::Q6K, 0..192, 0xFF),
        ];
        for (fmt, codes, max) in cases {
            let (n, k, m) = (24, 512, 6);
            let mut data = random_ggml(fmt, n, k, 11);
            let bb = fmt.block().1;
            for blk in data.chunks_exact_mut(bb) {
                blk[codes.clone()].fill(max);
                if fmt == QuantFormat::Q6K {
                    // Sub-block scales of -128: `J` within 5% of 2³¹.
                    blk[192..208].fill(0x80);
                }
            }
            // Every 16 values: one of magnitude 1, fifteen of 32384/32512, whose 16-bit
            // codes ±32384 split into hi = 127 or -126 and lo = -128; signs alternate by row.
            let x: Vec<f32> = (0..m * k)
                .map(|i| {
                    let sign = if (i / k) % 2 == 0 { 1.0 } else { -1.0 };
                    sign * if i % 16 == 0 { 1.0 } else { 32384.0 / 32512.0 }
                })
                .collect();
            for (bits, words) in [(16u8, false), (16, true), (8, false), (8, true)] {
                let mut w = PackedMatrix::from_ggml(fmt, &data, n, k).unwrap();
                w.set_activation_bits(bits);
                let Packed::Codes(c) = &w.data else {
                    unreachable!("quantized formats pack as codes")
                };
                let mut acts = acts::QuantActs::new();
                acts.resize(m, k, c.block, bits);
                quantize_rows(None, &x, m, &mut acts, words);
                if bits == 16 {
                    assert!(
                        acts.lo.iter().filter(|&&l| l == -128).count() > m * k / 2,
                        "{fmt:?}"
                    );
                }
                let mut got = vec![0f32; m * n];
                // SAFETY: the features were detected above; shapes are consistent.
                unsafe {
                    avx2::codes_panels(c, k, n, 0, w.panels(), &acts, m, &SharedOut::new(&mut got))
                };
                let mut want = vec![0f32; m * n];
                reference::matmul(&w, &x, m, &mut want);
                for i in 0..m * n {
                    assert_eq!(
                        got[i].to_bits(),
                        want[i].to_bits(),
                        "{fmt:?} {bits}-bit (words: {words}) at {i}: {} vs {}",
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn simd_matmul_is_bitwise_equal_to_scalar(fi in 0usize..9, m in prop_oneof![1usize..20, 20usize..72], n in 1usize..90, kb in 1usize..5, seed in 0u64..1000, bits in prop::sample::select(vec![8u8, 16])) {
        let fmt = FORMATS[fi];
        let (be, _) = fmt.block();
        let k = if be == 1 { kb * 16 + (seed as usize % 16) } else if be == 256 { 256 * kb.div_ceil(2) } else { 32 * kb };
        let data = random_ggml(fmt, n, k, seed);
        let mut w = PackedMatrix::from_ggml(fmt, &data, n, k).unwrap();
        w.set_activation_bits(bits);
        let x = x_rows(m, k, seed);
        let pool = ThreadPool::new(2);
        let mut y = vec![0f32; m * n];
        matmul(&pool, &w, &x, m, &mut y);
        let mut want = vec![0f32; m * n];
        reference::matmul(&w, &x, m, &mut want);
        for i in 0..m * n {
            prop_assert_eq!(y[i].to_bits(), want[i].to_bits(), "{:?} m{} n{} k{} at {}", fmt, m, n, k, i);
        }
    }

    #[test]
    fn avx2_matmul_is_bitwise_equal_to_scalar(fi in 3usize..9, m in 1usize..30, n in 1usize..40, kb in 1usize..4, seed in 0u64..1000, bits in prop::sample::select(vec![8u8, 16]), words in any::<bool>()) {
        #[cfg(target_arch = "x86_64")]
        {
            if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")) {
                return Ok(());
            }
            let fmt = FORMATS[fi];
            let (be, _) = fmt.block();
            let k = if be == 256 { 256 * kb.div_ceil(2) } else { 32 * kb };
            let data = random_ggml(fmt, n, k, seed);
            let mut w = PackedMatrix::from_ggml(fmt, &data, n, k).unwrap();
            w.set_activation_bits(bits);
            let Packed::Codes(c) = &w.data else { unreachable!("quantized formats pack as codes") };
            let x = x_rows(m, k, seed);
            let mut acts = acts::QuantActs::new();
            acts.resize(m, k, c.block, bits);
            // The word kernel at any row count, not just where `matmul` picks it.
            quantize_rows(None, &x, m, &mut acts, words);
            let mut got = vec![0f32; m * n];
            // SAFETY: the features were detected above; shapes are consistent.
            unsafe { avx2::codes_panels(c, k, n, 0, w.panels(), &acts, m, &SharedOut::new(&mut got)) };
            let mut want = vec![0f32; m * n];
            reference::matmul(&w, &x, m, &mut want);
            for i in 0..m * n {
                prop_assert_eq!(got[i].to_bits(), want[i].to_bits(), "{:?} m{} n{} k{} at {}", fmt, m, n, k, i);
            }
        }
    }

    #[test]
    fn a_rows_result_does_not_depend_on_its_batch(m in 2usize..40, row in 0usize..40, seed in 0u64..100) {
        let row = row % m;
        let (n, k) = (37, 96);
        let data = random_ggml(QuantFormat::Q4_1, n, k, seed);
        let w = PackedMatrix::from_ggml(QuantFormat::Q4_1, &data, n, k).unwrap();
        let x = x_rows(m, k, seed);
        let pool = ThreadPool::new(2);
        let mut y = vec![0f32; m * n];
        matmul(&pool, &w, &x, m, &mut y);
        let mut alone = vec![0f32; n];
        matmul(&pool, &w, &x[row * k..(row + 1) * k], 1, &mut alone);
        prop_assert_eq!(&y[row * n..(row + 1) * n], &alone[..]);
    }
}
