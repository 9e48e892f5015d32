//! The gradient of an embedding lookup, `weights[indices]`: each row of the weights gets the
//! sum of the output's gradient rows that looked it up. burn's (`select_assign` adding into
//! zeros) runs one GPU thread a column down every looked-up row in turn: 768 threads for gpt2,
//! each waiting on 4,096 read-modify-writes one after another (the H200: ~1.15 ms a launch,
//! two a micro-batch, for the token and the position embeddings).

use crate::{
    chains::zeros,
    fusion_op::{register_kernel_with_ints, Inputs, Launch},
    reduce::{cube_a_row, cube_row, cube_sum},
};
use burn::tensor::{
    ops::{FloatTensor, IntTensor},
    Shape,
};
use burn_cubecl::{ops::numeric::zeros_client, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeDim};

/// Units of a cube: they share out a row's columns.
const UNITS: u32 = 256;

/// Columns a unit sums at once, over one pass along the later positions: gpt2's 768 and
/// gpt2-medium's 1,024 columns take one pass of 256 units, gpt2-large's and gpt2-xl's two.
const COLUMNS_A_UNIT: usize = 4;

pub trait EmbeddingGradient: burn::tensor::backend::Backend {
    /// `[rows, d]`: row `r` the sum of the rows `i` of `d_output` (`[n, d]`) whose
    /// `indices[i]` (`[n]`) is `r`, added in the order of `i` (as burn's `select_assign` adds
    /// them into zeros: the same bits); zeros where no index names a row. An index outside
    /// `0..rows` adds to no row.
    fn embedding_gradient(d_output: FloatTensor<Self>, indices: IntTensor<Self>, rows: usize) -> FloatTensor<Self>;
}

/// One cube a looked-up position: the first position with its index sums that index's rows of
/// `d_output` (its own and every later one's, in order) into the gradient's row, each unit a
/// few columns; a position with an earlier one of the same index leaves its row to that one.
/// `gradient` holds zeros, and its rows that no index names stay so.
#[cube(launch)]
fn embedding_gradient_kernel<F: Float, I: Int>(
    d_output: &Tensor<F>,
    indices: &Tensor<I>,
    gradient: &mut Tensor<F>,
    #[comptime] units: usize,
) {
    let position = cube_row();
    let positions = indices.shape(0);
    if position >= positions {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let index_stride = indices.stride(0);
    let index = indices[position * index_stride];

    let mut partial = SharedMemory::<F>::new(units);
    let mut earlier = F::new(0.0);
    let mut i = unit;
    while i < position {
        if indices[i * index_stride] == index {
            earlier = F::new(1.0);
        }
        i += units;
    }
    let earlier = cube_sum::<F>(&mut partial, earlier);

    let row = usize::cast_from(index);
    if earlier == F::new(0.0) && row < gradient.shape(0) {
        let d = d_output.shape(1);
        let (d_row, d_column) = (d_output.stride(0), d_output.stride(1));
        let mut first_column = 0;
        while first_column < d {
            let mut sums = zeros::<F>(COLUMNS_A_UNIT);
            for later in position..positions {
                if indices[later * index_stride] == index {
                    #[unroll]
                    for c in 0..COLUMNS_A_UNIT {
                        let column = first_column + c * units + unit;
                        if column < d {
                            sums[c] += d_output[later * d_row + column * d_column];
                        }
                    }
                }
            }
            #[unroll]
            for c in 0..COLUMNS_A_UNIT {
                let column = first_column + c * units + unit;
                if column < d {
                    gradient[row * gradient.stride(0) + column * gradient.stride(1)] = sums[c];
                }
            }
            first_column += COLUMNS_A_UNIT * units;
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> EmbeddingGradient for CubeBackend<R, F, I, BT> {
    fn embedding_gradient(d_output: FloatTensor<Self>, indices: IntTensor<Self>, rows: usize) -> FloatTensor<Self> {
        assert_eq!(d_output.dtype, F::dtype(), "the embedding's gradient is taken in the backend's float type");
        let [positions, d] = d_output.meta.shape().dims::<2>();
        let client = d_output.client.clone();
        let gradient = zeros_client(client.clone(), d_output.device.clone(), Shape::new([rows, d]), d_output.dtype);
        embedding_gradient_kernel::launch::<F, I, R>(
            &client,
            cube_a_row(positions),
            CubeDim::new_1d(UNITS),
            d_output.into_tensor_arg(),
            indices.into_tensor_arg(),
            gradient.clone().into_tensor_arg(),
            UNITS as usize,
        );
        gradient
    }
}

impl<B: FusionBackend + EmbeddingGradient> EmbeddingGradient for Fusion<B> {
    fn embedding_gradient(d_output: FloatTensor<Self>, indices: IntTensor<Self>, rows: usize) -> FloatTensor<Self> {
        let d = d_output.shape.dims::<2>()[1];
        let launch: Launch<B, usize> =
            |&rows, mut inputs: Inputs<B>| vec![B::embedding_gradient(inputs.float(), inputs.int(), rows)];
        let outputs = [(Shape::new([rows, d]), d_output.dtype)];
        let [gradient] = register_kernel_with_ints::<B, _>(
            "embedding_gradient",
            vec![d_output],
            vec![indices],
            &outputs,
            rows,
            launch,
        )
        .try_into()
        .expect("one output");
        gradient
    }
}
