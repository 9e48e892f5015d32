//! What the kernels' tests share: tensors to and from the backend's own, and values on the host
//! in f64, where the tests compute what the kernels should give.

// Each test binary takes what it needs.
#![allow(dead_code)]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, DType, FloatDType, TensorPrimitive},
};

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
    let mut state = seed;
    (0..len).map(|_| (low + (high - low) * unit(&mut state)) as f32).collect()
}

/// `len` draws from the standard normal distribution (Box-Muller), the same for the same
/// `seed` on every run.
pub fn normal(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            let (u, v) = (unit(&mut state), unit(&mut state));
            ((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// The next of splitmix64's outputs from `state`, as a draw from `[0, 1)`.
fn unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / 2f64.powi(64)
}
