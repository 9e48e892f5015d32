//! The softmax-denominator kernel against f64 sums on the host, on burn's wgpu backend (with and
//! without fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test softmax_denominator`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::prelude::*;
use cube_kernels::SoftmaxDenominator;
use support::{assert_close, host_primitive, normal, primitive, Eager, Fused};

mod support;

/// `Σⱼ exp(lⱼ / t − m)` of each row, in f64 after the f32 division the sampler makes.
fn denominators(logits: &[f32], vocab: usize, temperature: f32) -> Vec<f64> {
    logits
        .chunks(vocab)
        .map(|row| {
            let scaled: Vec<f32> = row.iter().map(|&l| l / temperature).collect();
            let largest = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            scaled.iter().map(|&s| f64::from(s - largest).exp()).sum()
        })
        .collect()
}

/// Each row's denominator as the kernel gives it on backend `B`.
fn on<B: SoftmaxDenominator>(logits: &[f32], vocab: usize, temperature: f32) -> Vec<f64> {
    let rows = logits.len() / vocab;
    let tensor = Tensor::<B, 2>::from_data(TensorData::new(logits.to_vec(), [rows, vocab]), &Default::default());
    host_primitive::<B, 1>(B::softmax_denominators(primitive(tensor), temperature))
}

fn check(what: &str, logits: Vec<f32>, vocab: usize, temperature: f32, relative: f64) {
    let expected = denominators(&logits, vocab, temperature);
    let eager = on::<Eager>(&logits, vocab, temperature);
    let fused = on::<Fused>(&logits, vocab, temperature);
    for (backend, actual) in [("eager", eager), ("fusion", fused)] {
        assert_eq!(actual.len(), expected.len(), "{what}, {backend}");
        for (row, (e, a)) in expected.iter().zip(&actual).enumerate() {
            assert!((e - a).abs() <= relative * e, "{what}, {backend}: row {row}: {a} for {e}");
        }
    }
}

#[test]
fn gpt2_rows_at_several_temperatures() {
    let (rows, vocab) = (3, 50_257);
    // Logits spread as a trained model's are (a few far above the rest), and one row where one
    // token holds nearly all the mass.
    let mut logits: Vec<f32> = normal(rows * vocab, 11).into_iter().map(|z| 3.0 * z).collect();
    logits[2 * vocab + 40_000] = 60.0;
    for temperature in [0.7, 1.0, 1.5] {
        check(&format!("temperature {temperature}"), logits.clone(), vocab, temperature, 1e-5);
    }
}

#[test]
fn rows_narrower_than_the_cube_and_more_than_a_line_of_cubes() {
    // 65,537 rows take a second line of cubes (wgpu's limit is 65,535 a dimension); 3 logits a
    // row leave most units without one.
    let vocab = 3;
    let logits = normal(65_537 * vocab, 12);
    check("3 logits a row", logits, vocab, 1.0, 1e-6);
}

#[test]
fn sums_are_not_a_single_units() {
    // Equal logits: the denominator is the vocabulary's size, so every unit's share counts.
    let vocab = 1_000;
    assert_close("equal logits", &[vocab as f64; 2], &on::<Fused>(&vec![0.0; 2 * vocab], vocab, 0.5), 1e-6);
}
