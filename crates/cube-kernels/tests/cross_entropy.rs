//! The cross-entropy kernels against the same sums in f64 on the host (the gradient in f16
//! against the f32 one rounded), with and without columns of padding after the vocabulary,
//! on burn's wgpu backend (with and without fusion; Mesa's
//! software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test cross_entropy`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{DType, TensorPrimitive},
};
use cube_kernels::CrossEntropyRows;
use support::{
    assert_close, from_host, host, host_primitive, normal, primitive, uniform, Eager, Fused, HALF, HALF_FLOAT,
};

mod support;

/// Padding's logits: far above the vocabulary's, so that a kernel reading them is seen.
const PADDING_LOGIT: f32 = 90.0;

fn check<B: CrossEntropyRows>(rows: usize, vocab: usize, columns: usize) {
    let what = format!("rows {rows}, vocab {vocab}, columns {columns}");
    let device = Default::default();
    // Fixed draws: a failure reruns as it failed. Logits far from 0, as a trained model's are.
    let seed = (rows * columns) as u64;
    let padded: Vec<f32> = normal(rows * columns, seed)
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % columns < vocab { 20.0 + 6.0 * x } else { PADDING_LOGIT })
        .collect();
    let logits = Tensor::<B, 2>::from_data(TensorData::new(padded, [rows, columns]), &device);
    let targets: Vec<i64> = (0..rows).map(|row| (row * 7_919 % vocab) as i64).collect();
    let d_losses = from_host::<B, 1>(uniform(rows, -1.0, 1.0, seed + 1), [rows]);
    let (x, g) = (host(logits.clone()), host(d_losses.clone()));

    // The gradient is zero on the padding.
    let mut expected = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows * columns]);
    for row in 0..rows {
        let x = &x[row * columns..row * columns + vocab];
        let largest = x.iter().copied().fold(f64::MIN, f64::max);
        let log_normaliser = largest + x.iter().map(|x| (x - largest).exp()).sum::<f64>().ln();
        let target = targets[row] as usize;
        expected.0[row] = log_normaliser - x[target];
        expected.1[row] = log_normaliser;
        for (column, x) in x.iter().enumerate() {
            let one_hot = if column == target { 1.0 } else { 0.0 };
            expected.2[row * columns + column] = ((x - log_normaliser).exp() - one_hot) * g[row];
        }
    }

    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [rows]), &device).into_primitive();
    let (losses, log_normalisers) = B::cross_entropy_rows(primitive(logits.clone()), targets.clone(), vocab);
    assert_close(&format!("{what}: losses"), &expected.0, &host_primitive::<B, 1>(losses), 1e-6);
    assert_close(
        &format!("{what}: log-normalisers"),
        &expected.1,
        &host_primitive::<B, 1>(log_normalisers.clone()),
        1e-6,
    );
    let backward = |d_logits| {
        let (logits, log_normalisers, targets) = (primitive(logits.clone()), log_normalisers.clone(), targets.clone());
        let d_losses = primitive(d_losses.clone());
        let d_logits = B::cross_entropy_rows_backward(logits, log_normalisers, targets, d_losses, d_logits, vocab);
        Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(d_logits))
    };
    let d_logits = backward(DType::F32);
    // exp(logit − log-normaliser) carries the log-normaliser's f32 rounding (an ulp of ~50).
    assert_close(&format!("{what}: d_logits"), &expected.2, &host(d_logits.clone()), 1e-5);

    // In f16, as a product of 16-bit operands reads it (bf16's path; wgpu has no bf16): the f32
    // gradient rounded, element for element.
    let rounded = backward(HALF);
    assert_eq!(rounded.dtype(), HALF, "{what}: the rounded gradient's type");
    let values = |tensor: Tensor<B, 2>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(values(rounded), values(d_logits.cast(HALF_FLOAT)), "{what}: d_logits, rounded");
}

/// (rows, vocab, columns): a row narrower than a cube, GPT-2's vocabulary alone and padded as
/// the LM head pads it in training, more rows than one launch dimension holds (65,535 cubes),
/// and padding wider than a cube.
const SHAPES: [(usize, usize, usize); 5] =
    [(3, 10, 10), (5, 50_257, 50_257), (5, 50_257, 50_304), (65_537, 3, 3), (3, 10, 300)];

#[test]
fn cross_entropy_matches_f64_sums() {
    for (rows, vocab, columns) in SHAPES {
        check::<Eager>(rows, vocab, columns);
        check::<Fused>(rows, vocab, columns);
    }
}

#[test]
fn a_target_outside_the_vocabulary_gets_the_largest_loss() {
    type B = Fused;
    let device = Default::default();
    let logits = Tensor::<B, 2>::zeros([2, 4], &device);
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![4i64, 1], [2]), &device).into_primitive();
    let (losses, _) = B::cross_entropy_rows(primitive(logits), targets, 4);
    let losses = host_primitive::<B, 1>(losses);
    assert_eq!(losses[0], f64::from(f32::MAX), "{losses:?}");
    assert!((losses[1] - 4f64.ln()).abs() < 1e-6, "{losses:?}");
}
