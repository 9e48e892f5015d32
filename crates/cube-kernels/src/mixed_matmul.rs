//! Matrix products of bf16 operands with the product in f32: `--precision bf16`'s.
//!
//! burn's products (fusion's, and burn's own without autotune) take cubek's simple cyclic
//! tensor-core routine with an inferred blueprint, which gives a bf16 product twice the planes
//! of an f32 one (cubek-matmul 0.2's `infer_blueprint_plane` halves the planes for 4-byte
//! stage elements only), although its accumulators are f32 all the same: 16 planes of 32 units
//! on CUDA, so at most 128 registers a unit for 16 accumulator tiles a plane, and ptxas spills
//! them (`scripts/bench/kernel_registers.sh`: each tile loaded from local memory and stored back
//! around its tensor-core instruction, in the main loop). Here the product takes the routine
//! burn's fusion autotune tries for bf16, cubek's ordered double buffering with 8 rows of tiles
//! a cube, but one row a plane (burn's autotune: two, which spills too): 8 planes of 32 units,
//! each with a row of 8 accumulator tiles and up to 255 registers, the shape of burn's f32
//! products (`scripts/bench/bf16_products.sh`). The product is written in f32 straight from the
//! accumulators (burn writes bf16 and casts it back). Where that routine cannot run (no tensor
//! cores: wgpu on the CPU), burn's default does.

use crate::fusion_op::{register_kernel_typed, Launch};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubek::{
    matmul::{
        components::tile::TileMatmulKind,
        definition::{MatmulElems, MatmulGlobalElems},
        launch::{launch_ref, Strategy},
        routines::{ordered_double_buffering::OrderedSelectionArgs, BlueprintStrategy},
    },
    std::InputBinding,
};

pub trait MixedMatmul: burn::tensor::backend::Backend {
    /// `lhs · rhs` for `lhs` `[m, k]` and `rhs` `[k, n]` of one type (bf16), accumulated and
    /// returned in f32: `[m, n]`. Either operand may be a transposed view.
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// cubek's ordered double-buffered tensor-core product, with burn's fusion autotune's row count
/// for bf16 operands and one row of tiles a plane.
fn ordered_double_buffering() -> Strategy {
    Strategy::OrderedDoubleCmma(BlueprintStrategy::Inferred(OrderedSelectionArgs {
        tile_matmul: TileMatmulKind::Cmma,
        row_count: Some(8),
        rows_per_plane: Some(1),
        partition_k: Some(2),
    }))
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> MixedMatmul for CubeBackend<R, F, I, BT> {
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        assert_eq!(lhs.dtype, rhs.dtype, "mixed product: {:?} beside {:?}", lhs.dtype, rhs.dtype);
        let [m, _] = lhs.meta.shape().dims::<2>();
        let [_, n] = rhs.meta.shape().dims::<2>();
        let product = empty_device_dtype(lhs.client.clone(), lhs.device.clone(), Shape::new([m, n]), DType::F32);
        let launch = |strategy: &Strategy| {
            let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
                lhs: lhs.dtype.into(),
                rhs: rhs.dtype.into(),
                out: DType::F32.into(),
            });
            launch_ref(
                strategy,
                &product.client,
                InputBinding::new(lhs.clone().binding(), lhs.dtype.into()),
                InputBinding::new(rhs.clone().binding(), rhs.dtype.into()),
                product.clone().binding(),
                &mut dtypes,
            )
        };
        // A setup error is raised before anything is launched; burn's fusion falls back the
        // same way when its product cannot run.
        if launch(&ordered_double_buffering()).is_err() {
            launch(&Strategy::Auto).expect("burn's default product");
        }
        product
    }
}

impl<B: FusionBackend + MixedMatmul> MixedMatmul for Fusion<B> {
    fn mixed_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let ([m, _], [_, n]) = (lhs.shape.dims::<2>(), rhs.shape.dims::<2>());
        let launch: Launch<B, _> = |&(), mut inputs| vec![B::mixed_matmul(inputs.float(), inputs.float())];
        let [product] = register_kernel_typed::<B, _>(
            "mixed_matmul",
            vec![lhs, rhs],
            &[(Shape::new([m, n]), DType::F32)],
            (),
            launch,
        )
        .try_into()
        .expect("one output");
        product
    }
}
