//! Mixed-precision products on the device against f64 products on the host, on burn's wgpu
//! backend with and without fusion (Mesa's software Vulkan driver on a machine without a GPU).
//! The driver has no tensor cores, so the product is burn's default routine the kernel falls
//! back to: what runs here is the operation around it (operands' types and layouts in, an f32
//! product out). `cargo test -p cube-kernels --features wgpu --test mixed_matmul`

mod support;

use burn::{
    backend::wgpu::{CubeBackend, WgpuRuntime},
    backend::Wgpu,
    prelude::*,
    tensor::{DType, FloatDType, TensorMetadata},
};
use cube_kernels::MixedMatmul;
use support::{assert_close, host, host_primitive, normal, primitive};

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

fn check<B: MixedMatmul>(lhs: Tensor<B, 2>, rhs: Tensor<B, 2>, operands: FloatDType, what: &str) {
    let (lhs, rhs) = (lhs.cast(operands), rhs.cast(operands));
    let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
    let want = expected(&host(lhs.clone().cast(FloatDType::F32)), &host(rhs.clone().cast(FloatDType::F32)), [m, k], n);
    let product = B::mixed_matmul(primitive(lhs), primitive(rhs));
    assert_eq!(product.dtype(), DType::F32, "{what}: the product's type");
    let actual = host_primitive::<B, 2>(product);
    assert_close(&format!("{what}: {m} × {k} · {k} × {n}, {operands:?} operands"), &want, &actual, 1e-5);
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
}

#[test]
fn products_match_f64_with_and_without_fusion() {
    check_shapes::<CubeBackend<WgpuRuntime, f32, i32, u32>>(FloatDType::F32);
    check_shapes::<Wgpu>(FloatDType::F32);
}

/// Operands of a half type with the product in f32, as bf16's are on CUDA (the driver has f16
/// and no bf16).
#[test]
fn half_operands_give_an_f32_product() {
    check_shapes::<CubeBackend<WgpuRuntime, f32, i32, u32>>(FloatDType::F16);
    check_shapes::<Wgpu>(FloatDType::F16);
}
