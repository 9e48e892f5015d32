//! The few-row kernels against matrixmultiply (ndarray's `dot`) on one core, on the shape each
//! thread gets while decoding with gpt2 (124M): a block of 128 rows of the `[768, 2304]`
//! attention weight, in cache, times 1 to 32 rows.
//!
//! cargo bench -p kernels --bench few_rows

use kernels::few_rows::times_weight;
use ndarray::Array2;
use std::{hint::black_box, time::Instant};

const K: usize = 128;
const N: usize = 2304;

/// GFLOP/s of `product` on `rows` rows, the best of five rounds of ~0.2 s.
fn gflops(rows: usize, mut product: impl FnMut()) -> f64 {
    let flops_per_call = (2 * rows * K * N) as f64;
    let calls = (2e8 / flops_per_call).ceil() as usize + 1;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                product();
            }
            flops_per_call * calls as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let weight = Array2::from_shape_fn((K, N), |(i, j)| ((i * 7 + j * 13) % 17) as f32 / 17.0 - 0.5);
    println!("x [rows, {K}] · W [{K}, {N}], one core, W in cache: GFLOP/s");
    println!("{:>5} {:>12} {:>16}", "rows", "few_rows", "matrixmultiply");
    for rows in [1, 2, 4, 8, 16, 32] {
        let x = Array2::from_shape_fn((rows, K), |(i, j)| ((i + j) % 5) as f32 - 2.0);
        let mut out = Array2::<f32>::zeros((rows, N));
        let ours = gflops(rows, || times_weight(black_box(x.view()), black_box(weight.view()), out.view_mut()));
        let theirs = gflops(rows, || {
            black_box(x.dot(&weight));
        });
        println!("{rows:>5} {ours:>12.1} {theirs:>16.1}");
    }
}
