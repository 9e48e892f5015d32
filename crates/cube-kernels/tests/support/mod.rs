//! What the kernels' tests share: tensors to and from the backend's own, and values on the host
//! in f64, where the tests compute what the kernels should give.

// Each test binary takes what it needs.
#![allow(dead_code)]

use burn::{
    prelude::*,
    tensor::{ops::FloatTensor, TensorPrimitive},
};

/// The backend's own tensor behind a float tensor.
pub fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
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
