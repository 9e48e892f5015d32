//! The sum of a flat buffer's squares, for the global-norm clip: each cube sums a block of the
//! buffer's squares, then the blocks' sums are summed the same way until one is left. burn's
//! `square` before its sums wrote the squares to a new buffer of the gradients' size (494 MB at
//! gpt2's shape), which the exact-size buffers of a CUDA training run then kept reserved.
//! Deterministic: every sum is added in one order, with no atomics.

use crate::{
    fusion_op::{register_kernel, Launch},
    reduce::{cube_a_row, cube_row, cube_sum},
};
use burn::tensor::{ops::FloatTensor, DType, Shape};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime,
    FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube. A power of two (the sums halve it).
const UNITS: u32 = 256;

/// Elements a cube sums: 64 a unit, read a cube's width apart (neighbouring units, neighbouring
/// elements).
const BLOCK: usize = UNITS as usize * 64;

pub trait SumOfSquares: burn::tensor::backend::Backend {
    /// `Σ xᵢ²` over `x` `[len]` (f32): `[1]`.
    fn sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Cube `b` writes `sums[b]`, the sum of block `b` of `input` (of its squares with `squared`).
#[cube(launch)]
fn block_sums_kernel<F: Float>(input: &Tensor<F>, sums: &mut Tensor<F>, #[comptime] squared: bool) {
    let block = cube_row();
    if block >= sums.shape(0) {
        terminate!();
    }
    let end = usize::min((block + 1) * BLOCK, input.shape(0));
    let mut sum = F::new(0.0);
    let mut i = block * BLOCK + UNIT_POS_X as usize;
    while i < end {
        let x = input[i];
        if squared {
            sum += x * x;
        } else {
            sum += x;
        }
        i += CUBE_DIM_X as usize;
    }
    let mut partial = SharedMemory::<F>::new(UNITS as usize);
    let total = cube_sum::<F>(&mut partial, sum);
    if UNIT_POS_X == 0 {
        sums[block] = total;
    }
}

/// The sums of `input`'s blocks (of their squares with `squared`): `[⌈len / BLOCK⌉]`, at least one.
fn block_sums<R: CubeRuntime>(input: CubeTensor<R>, squared: bool) -> CubeTensor<R> {
    let blocks = input.meta.num_elements().div_ceil(BLOCK).max(1);
    let sums =
        empty_device_contiguous_dtype(input.client.clone(), input.device.clone(), Shape::new([blocks]), DType::F32);
    block_sums_kernel::launch::<f32, R>(
        &input.client.clone(),
        cube_a_row(blocks),
        CubeDim::new_1d(UNITS),
        input.into_tensor_arg(),
        sums.clone().into_tensor_arg(),
        squared,
    );
    sums
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SumOfSquares for CubeBackend<R, F, I, BT> {
    fn sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        assert_eq!(x.dtype, DType::F32, "the sum of an f32 buffer's squares");
        assert!(x.is_contiguous(), "a whole buffer, not a view");
        let mut sums = block_sums(x, true);
        while sums.meta.num_elements() > 1 {
            sums = block_sums(sums, false);
        }
        sums
    }
}

impl<B: FusionBackend + SumOfSquares> SumOfSquares for Fusion<B> {
    fn sum_of_squares(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let launch: Launch<B, ()> = |(), mut inputs| vec![B::sum_of_squares(inputs.float())];
        let [sum] = register_kernel::<B, _>("sum_of_squares", vec![x], &[Shape::new([1])], (), launch)
            .try_into()
            .expect("one output");
        sum
    }
}
