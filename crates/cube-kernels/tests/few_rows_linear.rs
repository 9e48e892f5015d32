//! The few-rows linear kernel against burn's operations, on burn's wgpu backend (with and
//! without fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{activation::gelu_approximate, FloatDType, TensorPrimitive},
};
use cube_kernels::{After, Before, FewRowsLinear};
mod support;

use support::{allowing_tf32, from_host, normal, Eager, Fused, HALF, HALF_FLOAT};

const EPSILON: f64 = 1e-5;

/// What surrounds the product in the test.
#[derive(Clone, Copy, Debug)]
enum Around {
    Alone,
    LayerNormThenGelu,
    LayerNorm,
    Add,
}

/// Which weight the product takes.
#[derive(Clone, Copy, Debug)]
enum Weight {
    /// A linear layer's: `W` `[d_in, d_out]` and a bias.
    Linear,
    /// The LM head's: the token embedding `[d_out, d_in]` transposed, no bias.
    EmbeddingTransposed,
}

/// The kernel on `rows` × `d_in` inputs and a `d_in` × `d_out` weight stored as `weights`.
fn check<B: FewRowsLinear>(
    rows: usize,
    d_in: usize,
    d_out: usize,
    around: Around,
    weight: Weight,
    weights: FloatDType,
) {
    // Fixed draws: a failure reruns as it failed.
    let case = ((rows * d_in + d_out) * 8) as u64;
    let random =
        |dims: [usize; 2], scale, draw| from_host::<B, 2>(normal(dims[0] * dims[1], case + draw), dims) * scale;
    // x a view into wider rows with an offset mean (LayerNorm must centre it), as a cache's.
    let x = (random([rows, d_in + 5], 2.0, 0) + 1.5).slice([0..rows, 5..d_in + 5]);
    // Stored as the model stores it, then viewed as `[d_in, d_out]`.
    let (stored, bias) = match weight {
        Weight::Linear => {
            (random([d_in, d_out], 0.2, 1).cast(weights), Some(random([1, d_out], 1.0, 2).reshape([d_out])))
        }
        Weight::EmbeddingTransposed => (random([d_out, d_in], 0.2, 1).cast(weights).transpose(), None),
    };
    let gamma = (random([1, d_in], 0.3, 3) + 1.0).reshape([d_in]);
    let beta = random([1, d_in], 0.5, 4).reshape([d_in]);
    let residual = random([rows, d_out], 3.0, 5);

    let normed = || {
        let (variance, mean) = x.clone().var_mean_bias(1);
        (x.clone() - mean) / (variance + EPSILON).sqrt() * gamma.clone().unsqueeze() + beta.clone().unsqueeze()
    };
    // The kernel rounds its inputs to the weight's type; burn's product takes them rounded.
    let rounded = |tensor: Tensor<B, 2>| tensor.cast(weights).cast(FloatDType::F32);
    let product = |input: Tensor<B, 2>| {
        let product = rounded(input).matmul(rounded(stored.clone()));
        match &bias {
            Some(bias) => product + bias.clone().unsqueeze(),
            None => product,
        }
    };
    let expected = match around {
        Around::Alone => product(x.clone()),
        Around::LayerNormThenGelu => gelu_approximate(product(normed())),
        Around::LayerNorm => product(normed()),
        Around::Add => residual.clone() + product(x.clone()),
    };
    // LayerNorm's outputs, which the kernel and burn compute in f32 in different orders, may lie
    // within a few f32 roundings of the midpoint between two 16-bit values and round apart: by
    // one 16-bit step, which moves the row's outputs by that step times the weights (GELU's
    // slope at most 1.13 times that). Elsewhere both round the same values the same way.
    let rounding_apart = match (around, weights) {
        (Around::LayerNorm | Around::LayerNormThenGelu, FloatDType::F16 | FloatDType::BF16) => {
            let normed = normed();
            let band = (normed.clone().abs() + beta.clone().abs().unsqueeze()) * 1e-6;
            let step = (rounded(normed.clone() + band.clone()) - rounded(normed - band)).abs();
            let slope = if matches!(around, Around::LayerNormThenGelu) { 1.13 } else { 1.0 };
            step.matmul(rounded(stored.clone()).abs()) * slope
        }
        _ => Tensor::zeros([rows, d_out], &Default::default()),
    };
    let primitive = |tensor: Tensor<B, 2>| tensor.into_primitive().tensor();
    let primitive_1d = |tensor: Tensor<B, 1>| tensor.into_primitive().tensor();
    let layer_norm =
        || Before::LayerNorm { gamma: primitive_1d(gamma.clone()), beta: primitive_1d(beta.clone()), epsilon: EPSILON };
    let (before, after) = match around {
        Around::Alone => (Before::Nothing, After::Nothing),
        Around::LayerNormThenGelu => (layer_norm(), After::Gelu),
        Around::LayerNorm => (layer_norm(), After::Nothing),
        Around::Add => (Before::Nothing, After::Add(primitive(residual.clone()))),
    };
    let actual = B::few_rows_linear(primitive(x.clone()), primitive(stored), bias.map(primitive_1d), before, after);
    let actual = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(actual)).into_data().to_vec::<f32>().unwrap();
    let expected = expected.into_data().to_vec::<f32>().unwrap();
    let rounding_apart = rounding_apart.into_data().to_vec::<f32>().unwrap();
    assert_eq!(expected.len(), actual.len());
    // Relative to the largest output: a sum's rounding error scales with its terms, not with its
    // result, which can be near zero where the terms are not.
    let largest = expected.iter().fold(1.0f32, |largest, e| largest.max(e.abs()));
    let difference = (expected.iter().zip(&actual).zip(&rounding_apart))
        .map(|((e, a), apart)| ((e - a).abs() - apart).max(0.0))
        .fold(0.0f32, f32::max)
        / largest;
    assert!(
        difference <= allowing_tf32(1e-5) as f32,
        "{rows} × {d_in} → {d_out}, {around:?}, {weight:?} in {weights:?}: max difference {difference} of the \
         largest, beyond inputs rounded apart"
    );
}

#[test]
fn few_rows_linear_matches_burns_operations() {
    // 33 and 100 columns: a last block of columns cut short; 300 inputs: slices of uneven
    // length; 9, 20 and 64 rows: several blocks of rows, the last one short but for 64; 8,200
    // columns: blocks of 32 columns (narrower outputs take blocks of 8), the last cut short; 768
    // and 530 inputs: several chunks of 256 through shared memory, the last whole or cut short.
    for (rows, d_in, d_out, around) in [
        (1, 72, 216, Around::LayerNorm),
        (3, 300, 33, Around::Alone),
        (8, 72, 288, Around::LayerNormThenGelu),
        (2, 288, 72, Around::Add),
        (8, 300, 100, Around::Add),
        (9, 72, 100, Around::LayerNormThenGelu),
        (20, 300, 72, Around::Add),
        (64, 72, 216, Around::LayerNorm),
        (2, 72, 8200, Around::Add),
        (8, 768, 72, Around::LayerNorm),
        (5, 530, 40, Around::LayerNormThenGelu),
    ] {
        check::<Eager>(rows, d_in, d_out, around, Weight::Linear, FloatDType::F32);
        check::<Fused>(rows, d_in, d_out, around, Weight::Linear, FloatDType::F32);
    }
}

/// The LM head's product while decoding: `ln_f` then the token embedding transposed, no bias.
/// The embedding's rows are the input dimensions, so the kernel's neighbouring units take
/// neighbouring dimensions of one column (checked against burn's product whichever way).
#[test]
fn few_rows_linear_takes_a_transposed_weight_without_bias() {
    // 8,200 and 33 columns: the last block of columns cut short; 300 inputs: slices of uneven
    // length; 530: chunks, the last cut short; 9 rows: two blocks of rows.
    for (rows, d_in, d_out, around) in [
        (1, 72, 500, Around::LayerNorm),
        (8, 72, 8200, Around::LayerNorm),
        (3, 300, 33, Around::Alone),
        (9, 530, 100, Around::LayerNorm),
    ] {
        check::<Eager>(rows, d_in, d_out, around, Weight::EmbeddingTransposed, FloatDType::F32);
        check::<Fused>(rows, d_in, d_out, around, Weight::EmbeddingTransposed, FloatDType::F32);
    }
}

/// Weights stored narrower than the rows, as `sample --precision bf16` stores them. WebGPU has
/// no bf16, so f16 stands in for it here: the kernel takes either the same way (CUDA runs bf16).
#[test]
fn few_rows_linear_reads_narrow_weights() {
    type Unfused = Eager;
    assert!(Unfused::supports_dtype(&Default::default(), HALF), "this wgpu device has no f16");
    for (rows, d_in, d_out, around, weight) in [
        (1, 72, 216, Around::LayerNormThenGelu, Weight::Linear),
        (13, 300, 100, Around::Add, Weight::Linear),
        (2, 300, 500, Around::LayerNorm, Weight::EmbeddingTransposed),
    ] {
        check::<Unfused>(rows, d_in, d_out, around, weight, HALF_FLOAT);
        check::<Fused>(rows, d_in, d_out, around, weight, HALF_FLOAT);
    }
}
