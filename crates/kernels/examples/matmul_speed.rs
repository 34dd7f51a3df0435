//! Times the integer matmul on random weights of a real layer shape, for comparing kernel
//! changes on one host without a whole model around them (the engine's `autoglm perf`
//! measures end to end).
//!   cargo run --release -p kernels --example matmul_speed -- [ROWS] [COLS] [M] [THREADS]
//! Defaults: the Llama-3.2-1B FFN up projection (8192 × 2048), M = 32, all cores. Prints
//! the best of several runs for Q4_K and Q6_K (or the formats `FORMATS` lists, e.g.
//! `FORMATS=q5k,q8_0,q4_0`) at 16- and 8-bit activations.
use kernels::{matmul, PackedMatrix, QuantFormat, ThreadPool};
use std::time::Instant;

/// A tiny xorshift: the values do not matter to the speed, only that they are not all
/// alike.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// Random blocks of `fmt` whose f16 scales are set to a small finite value.
fn random_matrix(fmt: QuantFormat, rows: usize, cols: usize) -> Vec<u8> {
    let row = fmt.row_bytes(cols).expect("cols fit the block");
    let mut data = bytes(rows * row, 0x9e37_79b9);
    let (f16_at, block): (&[usize], usize) = match fmt {
        QuantFormat::Q4K => (&[0, 2], 144),
        QuantFormat::Q5K => (&[0, 2], 176),
        QuantFormat::Q6K => (&[208], 210),
        QuantFormat::Q8_0 => (&[0], 34),
        QuantFormat::Q4_0 => (&[0], 18),
        _ => unreachable!("not measured here"),
    };
    let small = half::f16::from_f32(0.01).to_le_bytes();
    for blk in data.chunks_exact_mut(block) {
        for &at in f16_at {
            blk[at..at + 2].copy_from_slice(&small);
        }
    }
    data
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .map_or(d, |s| s.parse().expect("a number"))
    };
    let (rows, cols, m) = (arg(1, 8192), arg(2, 2048), arg(3, 32));
    let pool = ThreadPool::new(arg(4, ThreadPool::default_threads()));
    let x: Vec<f32> = bytes(m * cols, 7)
        .iter()
        .map(|&b| b as f32 / 128.0 - 1.0)
        .collect();
    let mut y = vec![0.0f32; m * rows];
    // FORMATS=q4k,q5k,q6k,q8_0,q4_0 picks the formats (default q4k,q6k).
    let formats: Vec<QuantFormat> = std::env::var("FORMATS")
        .unwrap_or_else(|_| "q4k,q6k".into())
        .split(',')
        .map(|f| match f {
            "q4k" => QuantFormat::Q4K,
            "q5k" => QuantFormat::Q5K,
            "q6k" => QuantFormat::Q6K,
            "q8_0" => QuantFormat::Q8_0,
            "q4_0" => QuantFormat::Q4_0,
            other => panic!("unknown format {other}"),
        })
        .collect();
    for fmt in formats {
        let mut w = PackedMatrix::from_ggml(fmt, &random_matrix(fmt, rows, cols), rows, cols)
            .expect("packs");
        // BITS=16 or BITS=8 runs one activation width (for a profile of one kernel).
        let widths: Vec<u8> = std::env::var("BITS")
            .map_or(vec![16, 8], |b| vec![b.parse().expect("BITS is 16 or 8")]);
        for bits in widths {
            w.set_activation_bits(bits);
            let mut best = f64::INFINITY;
            for _ in 0..7 {
                // REPS=N repeats each timed run N times (default 20), e.g. for a profile.
                let reps = std::env::var("REPS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(20);
                let t = Instant::now();
                for _ in 0..reps {
                    matmul(&pool, &w, &x, m, &mut y);
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64);
            }
            let macs = (rows * cols * m) as f64;
            println!(
                "{fmt:?} {rows}x{cols} m={m} {bits}-bit: {:.3} ms, {:.1} GMAC/s",
                best * 1e3,
                macs / best / 1e9
            );
        }
    }
}
