//! Many tensors added, each to its own stretch of one flat buffer, in a launch for every
//! [`MAX_PIECES`] of them: the train stage sums each micro-batch's gradients (292 tensors at
//! gpt2-medium's shape) into the optimizer's flat buffers, where burn takes a launch a tensor
//! (and another to copy it into its stretch at the end of the step). A piece of any rank is
//! read in its elements' row-major order, so that none needs a reshape, an operation fusion
//! would record on the host for each gradient of each micro-batch.

use crate::{
    fusion_op::{register_kernel, Launch},
    in_place::writable_in_order,
};
use burn::tensor::ops::FloatTensor;
use burn_cubecl::{
    kernel::into_contiguous, tensor::CubeTensor, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
};
use burn_fusion::{Fusion, FusionBackend};
use cubecl::{prelude::*, CubeCount, CubeDim};

/// Most pieces a launch takes. Each is a binding of the kernel: fewer where the device allows
/// fewer (some Vulkan drivers give a shader 31 storage buffers; CUDA takes 1,024).
const MAX_PIECES: usize = 32;

/// Units of a cube.
const UNITS: u32 = 256;

/// Most cubes a piece gets: past `UNITS × MAX_CUBES_X` elements, a unit steps through its
/// piece by that width.
const MAX_CUBES_X: usize = 1024;

pub trait AddToStretches: burn::tensor::backend::Backend {
    /// `buffer` `[len]` with each of `pieces` `([n], start)` added to its stretch
    /// `start..start + n`, element by element. The stretches must not overlap.
    fn add_to_stretches(buffer: FloatTensor<Self>, pieces: Vec<(FloatTensor<Self>, usize)>) -> FloatTensor<Self>;
}

/// Cube `(x, y)` takes piece `y`, its units every `CUBE_COUNT_X × CUBE_DIM_X`-th element from
/// their own. Piece `i` is `lengths[i]` elements in rows of `columns[i]`, each row
/// `row_strides[i]` elements after the one before (more than `columns[i]` where CubeCL padded
/// the rows to its pitch).
#[cube(launch)]
fn add_to_stretches_kernel<F: Float>(
    buffer: &mut Tensor<F>,
    pieces: Sequence<Tensor<F>>,
    starts: Sequence<usize>,
    lengths: Sequence<usize>,
    columns: Sequence<usize>,
    row_strides: Sequence<usize>,
) {
    let width = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let count = pieces.len().comptime();
    #[unroll]
    for i in 0..count {
        if CUBE_POS_Y as usize == i {
            let piece = &pieces[i];
            let start = starts[i];
            let (length, columns, row_stride) = (lengths[i], columns[i], row_strides[i]);
            let mut j = ABSOLUTE_POS_X as usize;
            while j < length {
                let row = j / columns;
                buffer[start + j] = buffer[start + j] + piece[row * row_stride + j - row * columns];
                j += width;
            }
        }
    }
}

/// The columns and the distance between rows of `piece` where its elements lie in row-major
/// order with rows at a pitch (a matrix product's output on CUDA whose rows are not a multiple
/// of 512 bytes: gpt2-xl's weight gradients); none where they do not (a transposed view).
fn rows_at_a_pitch<R: CubeRuntime>(piece: &CubeTensor<R>) -> Option<(usize, usize)> {
    let (shape, strides) = (piece.meta.shape(), piece.meta.strides());
    let rank = shape.num_dims();
    let columns = shape[rank - 1];
    let row_stride = if rank > 1 { strides[rank - 2] } else { columns };
    let compact_above = (0..rank.saturating_sub(2)).all(|i| strides[i] == strides[i + 1] * shape[i + 1]);
    (strides[rank - 1] == 1 && row_stride >= columns && compact_above).then_some((columns, row_stride))
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AddToStretches for CubeBackend<R, F, I, BT> {
    fn add_to_stretches(buffer: FloatTensor<Self>, pieces: Vec<(FloatTensor<Self>, usize)>) -> FloatTensor<Self> {
        // Added in place where nothing else holds the buffer (the train stage's case).
        let buffer = writable_in_order(buffer);
        let length = buffer.meta.num_elements();
        // The buffer, the starts and the launch's own metadata take a binding each.
        let bindings = buffer.client.properties().hardware.max_bindings as usize;
        for chunk in pieces.chunks(bindings.saturating_sub(3).clamp(1, MAX_PIECES)) {
            let mut tensors = SequenceArg::<R, Tensor<F>>::new();
            let [mut starts, mut lengths, mut columns, mut row_strides] = std::array::from_fn(|_| SequenceArg::new());
            let mut longest = 0;
            for (piece, start) in chunk {
                let len = piece.meta.num_elements();
                assert!(start + len <= length, "a piece of {len} at {start} runs past the buffer's {length}");
                // Read in row-major order where it lies so; a transposed view is copied so first.
                let (piece, (piece_columns, row_stride)) = match rows_at_a_pitch(piece) {
                    Some(rows) => (piece.clone(), rows),
                    None => {
                        let piece = into_contiguous(piece.clone());
                        let columns = piece.meta.shape()[piece.meta.num_dims() - 1];
                        (piece, (columns, columns))
                    }
                };
                tensors.push(piece.into_tensor_arg());
                starts.push(*start);
                lengths.push(len);
                columns.push(piece_columns.max(1));
                row_strides.push(row_stride);
                longest = longest.max(len);
            }
            let cubes_x = longest.div_ceil(UNITS as usize).clamp(1, MAX_CUBES_X);
            add_to_stretches_kernel::launch::<F, R>(
                &buffer.client,
                CubeCount::Static(cubes_x as u32, chunk.len() as u32, 1),
                CubeDim::new_1d(UNITS),
                buffer.clone().into_tensor_arg(),
                tensors,
                starts,
                lengths,
                columns,
                row_strides,
            );
        }
        buffer
    }
}

impl<B: FusionBackend + AddToStretches> AddToStretches for Fusion<B> {
    fn add_to_stretches(buffer: FloatTensor<Self>, pieces: Vec<(FloatTensor<Self>, usize)>) -> FloatTensor<Self> {
        let shape = buffer.shape.clone();
        let starts: Vec<usize> = pieces.iter().map(|&(_, start)| start).collect();
        let inputs = std::iter::once(buffer).chain(pieces.into_iter().map(|(piece, _)| piece)).collect();
        // The buffer comes first, then the pieces in the order of their starts.
        let launch: Launch<B, _> = |starts: &Vec<usize>, mut inputs| {
            let buffer = inputs.float();
            vec![B::add_to_stretches(buffer, inputs.floats().zip(starts.iter().copied()).collect())]
        };
        let [summed] = register_kernel::<B, _>("add_to_stretches", inputs, &[shape], starts, launch)
            .try_into()
            .expect("one output");
        summed
    }
}
