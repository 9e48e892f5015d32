//! The sums down the columns of a matrix: the gradient of a bias added to every row (the q/k/v
//! projection's). burn's reduction, without autotune, runs one thread a column down every row:
//! at gpt2's 4 × 1024 rows, 2,304 threads each waiting on 4,096 loads one after another. Here
//! a cube sums a block of columns, its lanes sharing out the rows, as the kernels that take
//! other biases' gradients do.

use crate::{
    fusion_op::{register_kernel, Launch},
    reduce::{column_blocks, lanes_total, COLUMNS, LANES},
};
use burn::tensor::{ops::FloatTensor, Shape};
use burn_cubecl::{ops::numeric::empty_device_dtype, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::prelude::*;

pub trait ColumnSums: burn::tensor::backend::Backend {
    /// `Σ_rows x` for `x` `[rows, d]`: `[d]`.
    fn column_sums(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// One cube a block of [`COLUMNS`] columns, its [`LANES`] lanes sharing out the rows, then
/// lane 0 adding the lanes' sums.
#[cube(launch)]
fn column_sums_kernel<F: Float>(
    x: &Tensor<F>,
    sums: &mut Tensor<F>,
    #[comptime] columns: usize,
    #[comptime] lanes: usize,
) {
    let column = CUBE_POS_X as usize * columns + UNIT_POS_X as usize;
    let (rows, d) = (x.shape(0), x.shape(1));
    let mut partial = SharedMemory::<F>::new(columns * lanes);
    let mut sum = F::new(0.0);
    if column < d {
        let mut row = UNIT_POS_Y as usize;
        while row < rows {
            sum += x[row * x.stride(0) + column * x.stride(1)];
            row += lanes;
        }
    }
    let total = lanes_total::<F>(&mut partial, sum, columns, lanes);
    if UNIT_POS_Y == 0 && column < d {
        sums[column] = total;
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> ColumnSums for CubeBackend<R, F, I, BT> {
    fn column_sums(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let d = x.meta.shape().dims::<2>()[1];
        let sums = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([d]), x.dtype);
        let (cubes, units) = column_blocks(d);
        column_sums_kernel::launch::<F, R>(
            &x.client.clone(),
            cubes,
            units,
            x.into_tensor_arg(),
            sums.clone().into_tensor_arg(),
            COLUMNS as usize,
            LANES as usize,
        );
        sums
    }
}

impl<B: FusionBackend + ColumnSums> ColumnSums for Fusion<B> {
    fn column_sums(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [_, d] = x.shape.dims::<2>();
        let launch: Launch<B, _> = |&(), mut inputs| vec![B::column_sums(inputs.float())];
        let [sums] = register_kernel::<B, _>("column_sums", vec![x], &[Shape::new([d])], (), launch)
            .try_into()
            .expect("one output");
        sums
    }
}
