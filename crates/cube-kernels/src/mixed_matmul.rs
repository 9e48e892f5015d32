//! Matrix products of bf16 operands with the product in f32: `--precision bf16`'s.
//!
//! The product is burn's default routine (cubek's simple cyclic tensor-core product, without
//! autotune) writing f32 straight from its accumulators, where burn's own bf16 product writes
//! bf16 and casts it back. cubek's ordered double-buffered routine, which ptxas compiles
//! without spilling the accumulators, made the tiny fixture's bf16 training and decoding wrong
//! on an H200 (2026-12-04: losses of 11.5 where the CPU's are 9.1, logits off by their own
//! size), although it was right on every matrix `tests/mixed_matmul.rs` uploads there: most
//! likely it misreads operands whose rows CubeCL pads on CUDA (a row of 96 f32s takes 128
//! slots), which uploaded matrices never are. This routine made both right (losses within
//! 2e-3, logits within 1%) and gpt2's bf16 step faster. `GPT2_PRODUCTS` names another
//! ([`crate::product_routines`]), which takes the products it can run.

use crate::{
    fusion_op::{register_kernel_typed, Launch},
    product_routine::{chosen_product_routine, ProductRoutine, PRODUCT_ROUTINE_VARIABLE},
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubek::{
    matmul::{
        definition::{MatmulElems, MatmulGlobalElems, MatmulSetupError},
        launch::{launch_ref, Strategy},
    },
    std::InputBinding,
};
use std::sync::atomic::{AtomicBool, Ordering};

pub trait MixedMatmul: burn::tensor::backend::Backend {
    /// `lhs · rhs` for `lhs` `[…, m, k]` and `rhs` `[…, k, n]` of one type (bf16), with the
    /// same batch dimensions before the last two (none for a matrix), accumulated and returned
    /// in f32: `[…, m, n]`. Either operand may be a transposed view.
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> MixedMatmul for CubeBackend<R, F, I, BT> {
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        assert_eq!(lhs.dtype, rhs.dtype, "mixed product: {:?} beside {:?}", lhs.dtype, rhs.dtype);
        let default = || product_in_f32(&Strategy::Auto, &lhs, &rhs).expect("burn's default product");
        match chosen_product_routine() {
            None => default(),
            Some(routine) => product_in_f32(&routine.strategy, &lhs, &rhs).unwrap_or_else(|why| {
                refused(routine, &lhs, &rhs, why);
                default()
            }),
        }
    }
}

/// Says, the first time only, that the chosen `routine` cannot run a product (cubek's routines
/// each take some shapes, types and layouts): it and those like it take burn's default routine.
fn refused<R: CubeRuntime>(routine: &ProductRoutine, lhs: &CubeTensor<R>, rhs: &CubeTensor<R>, why: MatmulSetupError) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "notice: {PRODUCT_ROUTINE_VARIABLE}={} cannot run a product of {:?} by {:?} ({:?}): products it refuses \
             take burn's default routine",
            routine.name,
            lhs.meta.shape(),
            rhs.meta.shape(),
            why
        );
    }
}

/// `lhs · rhs` (`[…, m, k]` by `[…, k, n]`, either a transposed view) by cubek's `routine`,
/// written in f32 whatever the operands' type: `[…, m, n]`, or why the routine cannot run it.
pub fn product_in_f32<R: CubeRuntime>(
    routine: &Strategy,
    lhs: &CubeTensor<R>,
    rhs: &CubeTensor<R>,
) -> Result<CubeTensor<R>, MatmulSetupError> {
    let shape = product_shape(lhs.meta.shape(), rhs.meta.shape());
    let product = empty_device_contiguous_dtype(lhs.client.clone(), lhs.device.clone(), shape, DType::F32);
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: lhs.dtype.into(),
        rhs: rhs.dtype.into(),
        out: DType::F32.into(),
    });
    launch_ref(
        routine,
        &product.client,
        InputBinding::new(lhs.clone().binding(), lhs.dtype.into()),
        InputBinding::new(rhs.clone().binding(), rhs.dtype.into()),
        product.clone().binding(),
        &mut dtypes,
    )?;
    Ok(product)
}

/// `[…, m, n]` for `lhs` `[…, m, k]` and `rhs` `[…, k, n]`, whose batch dimensions must agree.
fn product_shape(lhs: &Shape, rhs: &Shape) -> Shape {
    let rank = lhs.num_dims();
    assert!(rank >= 2 && rhs.num_dims() == rank, "mixed product: {lhs:?} by {rhs:?}");
    assert_eq!(lhs[..rank - 2], rhs[..rank - 2], "mixed product: the batch dimensions of {lhs:?} and {rhs:?}");
    let mut product = lhs.clone();
    product[rank - 1] = rhs[rank - 1];
    product
}

impl<B: FusionBackend + MixedMatmul> MixedMatmul for Fusion<B> {
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = product_shape(&lhs.shape, &rhs.shape);
        let launch: Launch<B, _> = |&(), mut inputs| vec![B::mixed_matmul(inputs.float(), inputs.float())];
        let [product] =
            register_kernel_typed::<B, _>("mixed_matmul", vec![lhs, rhs], &[(shape, DType::F32)], (), launch)
                .try_into()
                .expect("one output");
        product
    }
}
