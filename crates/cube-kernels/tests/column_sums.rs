//! Sums down a matrix's columns on the device against f64 sums on the host, and the copy of the
//! matrix written with them in f16 against the matrix rounded, on burn's wgpu backend with and
//! without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! `cargo test -p cube-kernels --features wgpu --test column_sums`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod support;

use burn::{
    prelude::*,
    tensor::{DType, TensorPrimitive},
};
use cube_kernels::ColumnSums;
use support::{assert_close, host, host_primitive, normal, primitive, Eager, Fused, HALF, HALF_FLOAT};

fn check<B: ColumnSums>(x: Tensor<B, 2>, what: &str) {
    let [rows, d] = x.dims();
    let values = host(x.clone());
    let mut expected = vec![0.0f64; d];
    values.iter().enumerate().for_each(|(i, value)| expected[i % d] += value);
    let what = format!("{what}: {rows} rows, {d} columns");
    let (sums, same) = B::column_sums(primitive(x.clone()), DType::F32);
    let sums = host_primitive::<B, 1>(sums);
    assert_close(&what, &expected, &sums, 1e-5);
    assert_eq!(host_primitive::<B, 2>(same), values, "{what}: the matrix itself");

    // In f16, as a product of 16-bit operands reads it (bf16's path; wgpu has no bf16).
    let (rounded_sums, rounded) = B::column_sums(primitive(x.clone()), HALF);
    assert_eq!(host_primitive::<B, 1>(rounded_sums), sums, "{what}: the sums beside a copy");
    let rounded = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(rounded));
    assert_eq!(rounded.dtype(), HALF, "{what}: the copy's type");
    let f32s = |tensor: Tensor<B, 2>| tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    assert_eq!(f32s(rounded), f32s(x.cast(HALF_FLOAT)), "{what}: the copy, rounded");
}

fn matrix<B: ColumnSums>(rows: usize, d: usize) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(normal(rows * d, (rows * d) as u64), [rows, d]), &Default::default())
}

fn check_shapes<B: ColumnSums>() {
    // A row; fewer rows than a cube's lanes and fewer columns than its block; gpt2's q/k/v
    // width; a last block of columns cut short; many rows to a lane.
    for (rows, d) in [(1, 8), (7, 5), (65, 2304), (300, 100), (70_001, 3)] {
        check(matrix::<B>(rows, d), "row-major");
    }
    // A transposed matrix, read through its strides.
    check(matrix::<B>(33, 130).transpose(), "transposed");
}

#[test]
fn column_sums_match_f64_with_and_without_fusion() {
    check_shapes::<Eager>();
    check_shapes::<Fused>();
}
