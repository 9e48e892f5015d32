//! The sums down the columns of a matrix: the gradient of a bias added to every row (the q/k/v
//! projection's). burn's reduction, without autotune, runs one thread a column down every row:
//! at gpt2's 4 × 1024 rows, 2,304 threads each waiting on 4,096 loads one after another. Here
//! a cube sums a block of columns, its lanes sharing out the rows, as the kernels that take
//! other biases' gradients do. Where the product's operands are 16-bit (`--precision bf16`), its
//! backward pass reads the same gradient rounded: the kernel writes that copy as it reads.

use crate::{
    element::launch_for_element,
    fusion_op::{register_kernel_typed, Launch},
    reduce::{column_blocks, lane_rows, lanes_total, Column, COLUMNS, LANES, ROWS_AT_ONCE},
};
use burn::tensor::{ops::FloatTensor, DType, Shape, TensorMetadata};
use burn_cubecl::{
    ops::numeric::empty_device_contiguous_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::prelude::*;

pub trait ColumnSums: burn::tensor::backend::Backend {
    /// `Σ_rows x` for `x` `[rows, d]`: `[d]`, and `x` in the type `rounded`: `x` itself where
    /// it is x's own, else a copy (bf16 or f16) written in the same pass.
    fn column_sums(x: FloatTensor<Self>, rounded: DType) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// One cube a block of [`COLUMNS`] columns, its [`LANES`] lanes sharing out the rows, then
/// lane 0 adding the lanes' sums; each unit writes what it reads rounded to `P` where `rounding`.
#[cube(launch)]
fn column_sums_kernel<F: Float, P: Float>(
    x: &Tensor<F>,
    sums: &mut Tensor<F>,
    copy: &mut Tensor<P>,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
    #[comptime] rounding: bool,
) {
    let column = CUBE_POS_X as usize * columns + UNIT_POS_X as usize;
    let (rows, d) = (x.shape(0), x.shape(1));
    let mut partial = SharedMemory::<F>::new(columns * lanes);
    let mut sum = F::new(0.0);
    if column < d {
        let x_column = Column::of::<F>(x, column);
        let mut first = UNIT_POS_Y as usize;
        while first < rows {
            let values = lane_rows::<F>(x, &x_column, first, lanes);
            #[unroll]
            for n in 0..ROWS_AT_ONCE {
                let row = first + n * lanes;
                if row < rows {
                    if rounding {
                        copy[row * d + column] = P::cast_from(values[n]);
                    }
                    sum += values[n];
                }
            }
            first += ROWS_AT_ONCE * lanes;
        }
    }
    let total = lanes_total::<F>(&mut partial, sum, columns, lanes);
    if UNIT_POS_Y == 0 && column < d {
        sums[column] = total;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> ColumnSums for CubeBackend<R, F, I, BT> {
    fn column_sums(x: FloatTensor<Self>, rounded: DType) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let launch = launch_for_element!(column_sums_kernel::<F, R>, rounded, x.dtype, "column sums: the copy");
        let rounding = rounded != x.dtype;
        let shape = x.meta.shape().clone();
        let d = shape.dims::<2>()[1];
        let empty =
            |shape: Shape, dtype| empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), shape, dtype);
        let sums = empty(Shape::new([d]), x.dtype);
        // A tensor the kernel does not touch where it writes no copy.
        let copy = empty(if rounding { shape } else { Shape::new([1]) }, rounded);
        let (cubes, units) = column_blocks(d);
        launch(
            &x.client.clone(),
            cubes,
            units,
            x.clone().into_tensor_arg(),
            sums.clone().into_tensor_arg(),
            copy.clone().into_tensor_arg(),
            COLUMNS as usize,
            LANES as usize,
            rounding,
        );
        (sums, if rounding { copy } else { x })
    }
}

impl<B: FusionBackend + ColumnSums> ColumnSums for Fusion<B> {
    fn column_sums(x: FloatTensor<Self>, rounded: DType) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [_, d] = x.shape.dims::<2>();
        if rounded == x.dtype {
            let launch: Launch<B, _> = |&rounded, mut inputs| vec![B::column_sums(inputs.float(), rounded).0];
            let outputs = [(Shape::new([d]), x.dtype)];
            let [sums] = register_kernel_typed::<B, _>("column_sums", vec![x.clone()], &outputs, rounded, launch)
                .try_into()
                .expect("one output");
            return (sums, x);
        }
        let launch: Launch<B, _> = |&rounded, mut inputs| {
            let (sums, copy) = B::column_sums(inputs.float(), rounded);
            vec![sums, copy]
        };
        let outputs = [(Shape::new([d]), x.dtype), (x.shape(), rounded)];
        let [sums, copy] = register_kernel_typed::<B, _>("column_sums_rounding", vec![x], &outputs, rounded, launch)
            .try_into()
            .expect("two outputs");
        (sums, copy)
    }
}
