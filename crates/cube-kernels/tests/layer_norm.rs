//! The LayerNorm kernels against burn's operations, on burn's wgpu backend (with and without
//! fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu`

use burn::{
    backend::wgpu::{CubeBackend, WgpuRuntime},
    backend::Wgpu,
    prelude::*,
    tensor::{ops::FloatTensor, Distribution, TensorPrimitive},
};
use cube_kernels::LayerNormRows;

const EPSILON: f64 = 1e-5;

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

fn values<B: Backend>(tensor: FloatTensor<B>) -> Vec<f32> {
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(tensor)).into_data().to_vec::<f32>().unwrap()
}

fn assert_close<B: Backend>(what: &str, expected: Tensor<B, 2>, actual: FloatTensor<B>) {
    let (expected, actual) = (expected.into_data().to_vec::<f32>().unwrap(), values::<B>(actual));
    assert_eq!(expected.len(), actual.len(), "{what}");
    let difference = expected.iter().zip(&actual).map(|(e, a)| (e - a).abs() / e.abs().max(1.0)).fold(0.0f32, f32::max);
    assert!(difference <= 1e-5, "{what}: max relative difference {difference}");
}

/// Rows of different means and spreads, as the residual stream's, and γ, β.
fn inputs<B: Backend>(rows: usize, d: usize) -> (Tensor<B, 2>, Tensor<B, 1>, Tensor<B, 1>) {
    let device = Default::default();
    // Fixed draws: a failure reruns as it failed.
    B::seed(&device, (rows * d) as u64);
    let x = Tensor::<B, 2>::random([rows, d], Distribution::Normal(0.0, 1.0), &device)
        * Tensor::random([rows, 1], Distribution::Uniform(0.5, 8.0), &device)
        + Tensor::random([rows, 1], Distribution::Uniform(-3.0, 3.0), &device);
    let gamma = Tensor::random([d], Distribution::Uniform(0.5, 1.5), &device);
    let beta = Tensor::random([d], Distribution::Uniform(-1.0, 1.0), &device);
    (x, gamma, beta)
}

/// The normalised rows and inverse deviations, as burn computes LayerNorm.
fn normalize<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let (variance, mean) = x.clone().var_mean_bias(1);
    let inverse_deviation = (variance + EPSILON).sqrt().recip();
    ((x - mean) * inverse_deviation.clone(), inverse_deviation)
}

fn check_forward<B: LayerNormRows>(rows: usize, d: usize) {
    let (x, gamma, beta) = inputs::<B>(rows, d);
    let (normalized, inverse_deviation) = normalize(x.clone());
    let output = normalized.clone() * gamma.clone().unsqueeze() + beta.clone().unsqueeze();
    let actual = B::layer_norm_rows(primitive(x), primitive(gamma), primitive(beta), EPSILON);
    assert_close(&format!("rows {rows}, d {d}: output"), output, actual.0);
    assert_close(&format!("rows {rows}, d {d}: normalized"), normalized, actual.1);
    assert_close(&format!("rows {rows}, d {d}: inverse deviation"), inverse_deviation, actual.2);
}

fn check_backward<B: LayerNormRows>(rows: usize, d: usize) {
    let (x, gamma, _) = inputs::<B>(rows, d);
    let (normalized, inverse_deviation) = normalize(x);
    let d_y = Tensor::<B, 2>::random([rows, d], Distribution::Normal(0.0, 1.0), &Default::default());
    let g = d_y.clone() * gamma.clone().unsqueeze();
    let mean_g_n = (g.clone() * normalized.clone()).mean_dim(1);
    let d_x = (g.clone() - g.mean_dim(1) - normalized.clone() * mean_g_n) * inverse_deviation.clone();
    let actual = B::layer_norm_rows_backward(
        primitive(d_y),
        primitive(normalized),
        primitive(inverse_deviation),
        primitive(gamma),
    );
    assert_close(&format!("rows {rows}, d {d}: d_x"), d_x, actual);
}

fn check_parameter_gradients<B: LayerNormRows>(rows: usize, d: usize) {
    let (x, _, _) = inputs::<B>(rows, d);
    let (normalized, _) = normalize(x);
    let d_y = Tensor::<B, 2>::random([rows, d], Distribution::Normal(0.0, 1.0), &Default::default());
    // The sums in f64 on the host: burn's own column sums in f32, one thread down 65,537 rows,
    // are off by more than the kernel.
    let (g, n) =
        (d_y.clone().into_data().to_vec::<f32>().unwrap(), normalized.clone().into_data().to_vec::<f32>().unwrap());
    let mut expected = [vec![0.0f64; d], vec![0.0f64; d]];
    for (i, (g, n)) in g.iter().zip(&n).enumerate() {
        expected[0][i % d] += f64::from(*g) * f64::from(*n);
        expected[1][i % d] += f64::from(*g);
    }
    let (gamma, beta) = B::layer_norm_rows_parameter_gradients(primitive(d_y), primitive(normalized));
    for (what, expected, actual) in [("d_gamma", &expected[0], gamma), ("d_beta", &expected[1], beta)] {
        let actual =
            Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(actual)).into_data().to_vec::<f32>().unwrap();
        assert_eq!(expected.len(), actual.len(), "{what}");
        let largest = expected.iter().fold(1.0f64, |largest, e| largest.max(e.abs()));
        let difference = expected.iter().zip(&actual).map(|(e, a)| (e - f64::from(*a)).abs()).fold(0.0f64, f64::max);
        assert!(difference <= 1e-5 * largest, "rows {rows}, d {d}: {what} differs by {difference} at scale {largest}");
    }
}

/// Rows narrower than a cube's units, GPT-2's widths, and more rows than one launch dimension
/// holds (65,535 cubes).
const SHAPES: [(usize, usize); 4] = [(1, 8), (5, 768), (300, 1600), (65_537, 4)];

#[test]
fn layer_norm_matches_burns_operations() {
    for (rows, d) in SHAPES {
        check_forward::<CubeBackend<WgpuRuntime, f32, i32, u32>>(rows, d);
        check_forward::<Wgpu<f32, i32>>(rows, d);
    }
}

#[test]
fn layer_norm_backward_matches_burns_operations() {
    for (rows, d) in SHAPES {
        check_backward::<CubeBackend<WgpuRuntime, f32, i32, u32>>(rows, d);
        check_backward::<Wgpu<f32, i32>>(rows, d);
    }
}

#[test]
fn layer_norm_parameter_gradients_match_burns_operations() {
    for (rows, d) in SHAPES {
        check_parameter_gradients::<CubeBackend<WgpuRuntime, f32, i32, u32>>(rows, d);
        check_parameter_gradients::<Wgpu<f32, i32>>(rows, d);
    }
}
