//! The LayerNorm kernel against burn's operations, on burn's wgpu backend (with and without
//! fusion; Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu`

use burn::{
    backend::wgpu::{CubeBackend, WgpuRuntime},
    backend::Wgpu,
    prelude::*,
    tensor::{Distribution, TensorPrimitive},
};
use cube_kernels::LayerNormRows;

const EPSILON: f64 = 1e-5;

/// `(output, normalized, inverse_deviation)`, as burn computes LayerNorm.
fn reference<B: Backend>(x: Tensor<B, 2>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>) -> [Vec<f32>; 3] {
    let (variance, mean) = x.clone().var_mean_bias(1);
    let inverse_deviation = (variance + EPSILON).sqrt().recip();
    let normalized = (x - mean) * inverse_deviation.clone();
    let output = normalized.clone() * gamma.unsqueeze() + beta.unsqueeze();
    [output, normalized, inverse_deviation].map(|t| t.into_data().to_vec::<f32>().unwrap())
}

fn kernel<B: LayerNormRows>(x: Tensor<B, 2>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>) -> [Vec<f32>; 3] {
    let primitive = |t: Tensor<B, 2>| t.into_primitive().tensor();
    let (output, normalized, inverse_deviation) =
        B::layer_norm_rows(primitive(x), gamma.into_primitive().tensor(), beta.into_primitive().tensor(), EPSILON);
    [output, normalized, inverse_deviation]
        .map(|t| Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(t)).into_data().to_vec::<f32>().unwrap())
}

fn check<B: LayerNormRows>(rows: usize, d: usize) {
    let device = Default::default();
    // Rows of different means and spreads, as the residual stream's.
    let x = Tensor::<B, 2>::random([rows, d], Distribution::Normal(0.0, 1.0), &device)
        * Tensor::random([rows, 1], Distribution::Uniform(0.5, 8.0), &device)
        + Tensor::random([rows, 1], Distribution::Uniform(-3.0, 3.0), &device);
    let gamma = Tensor::<B, 1>::random([d], Distribution::Uniform(0.5, 1.5), &device);
    let beta = Tensor::<B, 1>::random([d], Distribution::Uniform(-1.0, 1.0), &device);
    let expected = reference(x.clone(), gamma.clone(), beta.clone());
    let actual = kernel(x, gamma, beta);
    for (what, (expected, actual)) in
        ["output", "normalized", "inverse deviation"].iter().zip(expected.iter().zip(&actual))
    {
        assert_eq!(expected.len(), actual.len(), "{what}");
        let difference =
            expected.iter().zip(actual).map(|(e, a)| (e - a).abs() / e.abs().max(1.0)).fold(0.0f32, f32::max);
        assert!(difference <= 1e-5, "rows {rows}, d {d}, {what}: max relative difference {difference}");
    }
}

#[test]
fn layer_norm_matches_burns_operations() {
    // Rows narrower than a cube's units, GPT-2's width, and more rows than one launch dimension
    // holds (65,535 cubes).
    for (rows, d) in [(1, 8), (5, 768), (300, 1600), (65_537, 4)] {
        check::<CubeBackend<WgpuRuntime, f32, i32, u32>>(rows, d);
        check::<Wgpu<f32, i32>>(rows, d);
    }
}
