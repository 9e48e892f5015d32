//! What the kernels' tests share: tensors to and from the backend's own, and values on the host
//! in f64, where the tests compute what the kernels should give.

// Each test binary takes what it needs.
#![allow(dead_code)]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, DType, Distribution, FloatDType, TensorPrimitive},
};
use rand::{rngs::StdRng, SeedableRng};

// The backends the kernels are tested on, without burn's fusion (`Eager`) and with it (`Fused`):
// burn's wgpu backend (Mesa's software Vulkan driver on a machine without a GPU), or with the
// `cuda` feature burn's CUDA backend, on a GPU.
#[cfg(not(feature = "cuda"))]
pub type Eager = burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;
#[cfg(not(feature = "cuda"))]
pub type Fused = burn::backend::Wgpu<f32, i32>;
#[cfg(feature = "cuda")]
pub type Eager = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;
#[cfg(feature = "cuda")]
pub type Fused = burn::backend::Cuda<f32, i32>;
/// The CubeCL runtime under [`Eager`] and [`Fused`].
#[cfg(not(feature = "cuda"))]
pub type Runtime = burn::backend::wgpu::WgpuRuntime;
#[cfg(feature = "cuda")]
pub type Runtime = cubecl::cuda::CudaRuntime;

/// The 16-bit type that `--precision bf16` writes what a product reads in: bf16 on CUDA; wgpu
/// has f16 and no bf16, whose narrower range these tests' values never leave.
#[cfg(not(feature = "cuda"))]
pub const HALF: DType = DType::F16;
#[cfg(feature = "cuda")]
pub const HALF: DType = DType::BF16;
/// [`HALF`] as a float tensor's type.
#[cfg(not(feature = "cuda"))]
pub const HALF_FLOAT: FloatDType = FloatDType::F16;
#[cfg(feature = "cuda")]
pub const HALF_FLOAT: FloatDType = FloatDType::BF16;

/// The backend's own tensor behind a float tensor.
pub fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// `tolerance` for a comparison that takes an f32 product on the device (burn's, or a kernel's
/// own), which on CUDA runs on TF32 tensor cores (10 of f32's 23 bits: errors of ~1e-3 of the
/// operands' scale).
pub fn allowing_tf32(tolerance: f64) -> f64 {
    if cfg!(feature = "cuda") {
        tolerance.max(2e-3)
    } else {
        tolerance
    }
}

/// A tensor's values, in f64.
pub fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor.into_data().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

/// The values of the backend's own `D`-dimensional tensor, in f64.
pub fn host_primitive<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Vec<f64> {
    host(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(tensor)))
}

/// Within `tolerance` of the largest expected value (1 at least).
pub fn assert_close(what: &str, expected: &[f64], actual: &[f64], tolerance: f64) {
    assert_eq!(expected.len(), actual.len(), "{what}");
    let largest = expected.iter().fold(1.0f64, |largest, e| largest.max(e.abs()));
    let difference = expected.iter().zip(actual).map(|(e, a)| (e - a).abs()).fold(0.0, f64::max);
    assert!(difference <= tolerance * largest, "{what}: differs by {difference} at scale {largest}");
}

/// A tensor of `values` (from [`uniform`] or [`normal`]) on the backend's default device.
pub fn from_host<B: Backend, const D: usize>(values: Vec<f32>, dims: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, dims), &Default::default())
}

/// `len` draws from the uniform distribution over `low..high`, the same for the same `seed`
/// on every run: burn's generator is one a device, which a binary's tests, run side by side,
/// share and reseed.
pub fn uniform(len: usize, low: f64, high: f64, seed: u64) -> Vec<f32> {
    drawn(len, Distribution::Uniform(low, high), seed)
}

/// `len` draws from the standard normal distribution, the same for the same `seed` on every run.
pub fn normal(len: usize, seed: u64) -> Vec<f32> {
    drawn(len, Distribution::Normal(0.0, 1.0), seed)
}

fn drawn(len: usize, distribution: Distribution, seed: u64) -> Vec<f32> {
    let data = TensorData::random::<f32, _, _>([len], distribution, &mut StdRng::seed_from_u64(seed));
    data.to_vec().unwrap()
}
