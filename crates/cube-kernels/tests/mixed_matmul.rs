//! Mixed-precision products on the device against f64 products on the host, on burn's wgpu
//! backend with and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! The driver has no tensor cores, so burn's routine, which the kernel launches, takes its form
//! without them: what runs here is the operation around it (operands' types and layouts in, an
//! f32 product out); with the `cuda` feature, on a GPU, the tensor-core form runs.
//! `cargo test -p cube-kernels --features wgpu --test mixed_matmul`
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod support;

use burn::{
    prelude::*,
    tensor::{DType, FloatDType, TensorMetadata},
};
use cube_kernels::MixedMatmul;
use support::{allowing_tf32, assert_close, host, host_primitive, normal, primitive, Eager, Fused, HALF_FLOAT};

/// `lhs · rhs` in f64 from the operands as rounded.
fn expected(lhs: &[f64], rhs: &[f64], [m, k]: [usize; 2], n: usize) -> Vec<f64> {
    let mut product = vec![0.0; m * n];
    for row in 0..m {
        for column in 0..n {
            product[row * n + column] = (0..k).map(|i| lhs[row * k + i] * rhs[i * n + column]).sum();
        }
    }
    product
}

/// Within this fraction of the largest value of the f64 product: the operands lose nothing but
/// the sum's rounding, except f32 ones on CUDA's TF32 tensor cores (half ones fit in TF32).
fn tolerance(operands: FloatDType) -> f64 {
    if operands == FloatDType::F32 {
        allowing_tf32(1e-5)
    } else {
        1e-5
    }
}

fn check<B: MixedMatmul>(lhs: Tensor<B, 2>, rhs: Tensor<B, 2>, operands: FloatDType, what: &str) {
    let (lhs, rhs) = (lhs.cast(operands), rhs.cast(operands));
    let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
    let want = expected(&host(lhs.clone().cast(FloatDType::F32)), &host(rhs.clone().cast(FloatDType::F32)), [m, k], n);
    let product = B::mixed_matmul(primitive(lhs), primitive(rhs));
    assert_eq!(product.dtype(), DType::F32, "{what}: the product's type");
    let actual = host_primitive::<B, 2>(product);
    assert_close(&format!("{what}: {m} × {k} · {k} × {n}, {operands:?} operands"), &want, &actual, tolerance(operands));
}

/// A batch of products, `[2, 3, m, k]` by `[2, 3, k, n]` (attention's heads): each matrix
/// against its own f64 product.
fn check_batched<B: MixedMatmul>(lhs: Tensor<B, 4>, rhs: Tensor<B, 4>, operands: FloatDType, what: &str) {
    let (lhs, rhs) = (lhs.cast(operands), rhs.cast(operands));
    let ([batch, heads, m, k], [.., n]) = (lhs.dims(), rhs.dims());
    let product = B::mixed_matmul(primitive(lhs.clone()), primitive(rhs.clone()));
    assert_eq!(product.dtype(), DType::F32, "{what}: the product's type");
    let actual = host_primitive::<B, 4>(product);
    let (lhs, rhs) = (host(lhs.cast(FloatDType::F32)), host(rhs.cast(FloatDType::F32)));
    let want: Vec<f64> = (0..batch * heads)
        .flat_map(|i| expected(&lhs[i * m * k..(i + 1) * m * k], &rhs[i * k * n..(i + 1) * k * n], [m, k], n))
        .collect();
    assert_close(
        &format!("{what}: {m} × {k} · {k} × {n} batched, {operands:?} operands"),
        &want,
        &actual,
        tolerance(operands),
    );
}

fn batch<B: MixedMatmul>(rows: usize, columns: usize, seed: u64) -> Tensor<B, 4> {
    let dims = [2, 3, rows, columns];
    Tensor::from_data(TensorData::new(normal(dims.iter().product(), seed), dims), &Default::default())
}

fn matrix<B: MixedMatmul>(rows: usize, columns: usize, seed: u64) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(normal(rows * columns, seed), [rows, columns]), &Default::default())
}

fn check_shapes<B: MixedMatmul>(operands: FloatDType) {
    // One element; shapes no tile divides; gpt2's width into a block of its q/k/v columns.
    for (m, k, n) in [(1, 1, 1), (7, 13, 5), (65, 768, 100)] {
        check(matrix::<B>(m, k, 1), matrix::<B>(k, n, 2), operands, "row-major");
    }
    // The backward pass's operands: a transposed right-hand side (`d_product · rhsᵀ`) and a
    // transposed left-hand side (`lhsᵀ · d_product`), read through their strides.
    check(matrix::<B>(33, 40, 3), matrix::<B>(17, 40, 4).transpose(), operands, "rhs transposed");
    check(matrix::<B>(40, 33, 5).transpose(), matrix::<B>(40, 17, 6), operands, "lhs transposed");
    // The tiny fixture model's products (32 wide, 512 tokens), rows of 2 × 48: q/k/v, the MLP's
    // two, the LM head (the embedding transposed), a decoding step's, and the weight gradients.
    for (m, k, n) in [(96, 32, 96), (96, 32, 128), (96, 128, 32), (2, 32, 96)] {
        check(matrix::<B>(m, k, 7), matrix::<B>(k, n, 8), operands, "tiny fixture");
    }
    check(matrix::<B>(96, 32, 9), matrix::<B>(512, 32, 10).transpose(), operands, "tiny fixture's LM head");
    check(matrix::<B>(96, 32, 11).transpose(), matrix::<B>(96, 128, 12), operands, "tiny fixture's weight gradient");
    // gpt2's: q/k/v's columns from its width, the MLP's output from its 3072 hidden units.
    check(matrix::<B>(64, 768, 13), matrix::<B>(768, 256, 14), operands, "gpt2's width");
    check(matrix::<B>(16, 3072, 15), matrix::<B>(3072, 64, 16), operands, "gpt2's hidden units");
    // Attention's, by heads: the scores `q · kᵀ`, the output `weights · v`, and the backward
    // pass's `weightsᵀ · d_output`.
    check_batched(batch::<B>(37, 8, 17), batch::<B>(37, 8, 18).swap_dims(2, 3), operands, "scores");
    check_batched(batch::<B>(37, 37, 19), batch::<B>(37, 8, 20), operands, "weights by values");
    check_batched(batch::<B>(37, 37, 21).swap_dims(2, 3), batch::<B>(37, 8, 22), operands, "weights transposed");
}

#[test]
fn products_match_f64_with_and_without_fusion() {
    check_shapes::<Eager>(FloatDType::F32);
    check_shapes::<Fused>(FloatDType::F32);
}

/// Operands of a half type with the product in f32, as bf16's are on CUDA (the driver has f16
/// and no bf16).
#[test]
fn half_operands_give_an_f32_product() {
    check_shapes::<Eager>(HALF_FLOAT);
    check_shapes::<Fused>(HALF_FLOAT);
}
