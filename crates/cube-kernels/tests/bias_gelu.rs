//! `gelu(product + bias)` and its backward pass against GELU and its derivative taken
//! numerically, with column sums, in f64 on the host, on burn's wgpu backend (with and without
//! fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test bias_gelu`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::{
    prelude::*,
    tensor::{DType, TensorPrimitive},
};
use cube_kernels::BiasGelu;
use support::{
    assert_close, from_host, host, host_primitive, normal, primitive, uniform, Eager, Fused, HALF, HALF_FLOAT,
};

mod support;

/// GPT-2's GELU, with tanh, in f64.
fn gelu(x: f64) -> f64 {
    let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
    0.5 * x * (1.0 + inner.tanh())
}

/// The product, the bias and the output's gradient for `rows` × `d`: fixed draws (a failure
/// reruns as it failed), wide enough to reach GELU's flat tails.
fn inputs<B: BiasGelu>(rows: usize, d: usize) -> (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 2>) {
    let seed = (rows * d) as u64;
    let product = from_host(normal(rows * d, seed), [rows, d]) * 3.0;
    let bias = from_host(uniform(d, -1.0, 1.0, seed + 1), [d]);
    let d_hidden = from_host(normal(rows * d, seed + 2), [rows, d]);
    (product, bias, d_hidden)
}

fn check<B: BiasGelu>(rows: usize, d: usize) {
    let what = format!("rows {rows}, d {d}");
    let (product, bias, d_hidden) = inputs::<B>(rows, d);
    let (x, b, g) = (host(product.clone()), host(bias.clone()), host(d_hidden.clone()));

    let expected_hidden: Vec<f64> = (0..rows * d).map(|i| gelu(x[i] + b[i % d])).collect();
    let hidden = B::bias_gelu(primitive(product.clone()), primitive(bias.clone()), DType::F32);
    assert_close(&format!("{what}: hidden"), &expected_hidden, &host_primitive::<B, 2>(hidden), 1e-5);

    // The derivative by central differences, h² below f32's precision.
    let h = 1e-4;
    let expected_product: Vec<f64> = (0..rows * d)
        .map(|i| {
            let x = x[i] + b[i % d];
            g[i] * (gelu(x + h) - gelu(x - h)) / (2.0 * h)
        })
        .collect();
    let mut expected_bias = vec![0.0f64; d];
    expected_product.iter().enumerate().for_each(|(i, gradient)| expected_bias[i % d] += gradient);

    let (d_product, d_bias) =
        B::bias_gelu_backward(primitive(product), primitive(bias), primitive(d_hidden), DType::F32);
    assert_close(&format!("{what}: d_product"), &expected_product, &host_primitive::<B, 2>(d_product), 1e-5);
    assert_close(&format!("{what}: d_bias"), &expected_bias, &host_primitive::<B, 1>(d_bias), 1e-5);
}

/// Fewer columns than a cube's, GPT-2's MLP widths, and more rows than a cube's lanes.
const SHAPES: [(usize, usize); 4] = [(1, 8), (7, 3072), (300, 6400), (4099, 33)];

#[test]
fn bias_gelu_and_its_backward_match_f64() {
    for (rows, d) in SHAPES {
        check::<Eager>(rows, d);
        check::<Fused>(rows, d);
    }
}

/// The output and the product's gradient in f16, as a product of 16-bit operands reads them:
/// the f32 ones rounded, element for element, with the bias's gradient as in f32 (bf16's path;
/// wgpu has no bf16).
fn check_rounded<B: BiasGelu>(rows: usize, d: usize) {
    let what = format!("rows {rows}, d {d}");
    let (product, bias, d_hidden) = inputs::<B>(rows, d);
    let matrix = |primitive| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(primitive));
    let run = |written| {
        let hidden = B::bias_gelu(primitive(product.clone()), primitive(bias.clone()), written);
        let (d_product, d_bias) = B::bias_gelu_backward(
            primitive(product.clone()),
            primitive(bias.clone()),
            primitive(d_hidden.clone()),
            written,
        );
        (matrix(hidden), matrix(d_product), host_primitive::<B, 1>(d_bias))
    };
    let (full, rounded) = (run(DType::F32), run(HALF));
    assert_eq!((rounded.0.dtype(), rounded.1.dtype()), (HALF, HALF), "{what}: the types");
    let values = |tensor: Tensor<B, 2>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(values(rounded.0), values(full.0.cast(HALF_FLOAT)), "{what}: the output, rounded");
    assert_eq!(values(rounded.1), values(full.1.cast(HALF_FLOAT)), "{what}: the product's gradient, rounded");
    assert_eq!(rounded.2, full.2, "{what}: the bias's gradient, in f32");
}

#[test]
fn bias_gelu_writes_in_the_type_asked_for() {
    for (rows, d) in SHAPES {
        check_rounded::<Eager>(rows, d);
        check_rounded::<Fused>(rows, d);
    }
}

/// A product laid out column by column (a transposed view) is read through its strides.
fn check_transposed<B: BiasGelu>() {
    let (rows, d) = (5, 37);
    let columns = from_host::<B, 2>(normal(rows * d, 7), [d, rows]);
    let bias = from_host::<B, 1>(uniform(d, -1.0, 1.0, 8), [d]);
    let product = columns.transpose();
    let (x, b) = (host(product.clone()), host(bias.clone()));
    let expected: Vec<f64> = (0..rows * d).map(|i| gelu(x[i] + b[i % d])).collect();
    let hidden = B::bias_gelu(primitive(product), primitive(bias), DType::F32);
    assert_close("transposed product", &expected, &host_primitive::<B, 2>(hidden), 1e-5);
}

#[test]
fn bias_gelu_reads_a_transposed_product() {
    check_transposed::<Eager>();
    check_transposed::<Fused>();
}
