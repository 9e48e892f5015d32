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
use burn_cubecl::{kernel::into_contiguous, BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
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
/// their own.
#[cube(launch)]
fn add_to_stretches_kernel<F: Float>(buffer: &mut Tensor<F>, pieces: Sequence<Tensor<F>>, starts: Sequence<usize>) {
    let width = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let count = pieces.len().comptime();
    #[unroll]
    for i in 0..count {
        if CUBE_POS_Y as usize == i {
            let piece = &pieces[i];
            let start = starts[i];
            let mut j = ABSOLUTE_POS_X as usize;
            while j < piece.len() {
                buffer[start + j] = buffer[start + j] + piece[j];
                j += width;
            }
        }
    }
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
            let mut starts = SequenceArg::<R, usize>::new();
            let mut longest = 0;
            for (piece, start) in chunk {
                let len = piece.meta.num_elements();
                assert!(start + len <= length, "a piece of {len} at {start} runs past the buffer's {length}");
                // Laid out row by row, its elements in the order they are read; a transposed
                // view is copied so first.
                tensors.push(into_contiguous(piece.clone()).into_tensor_arg());
                starts.push(*start);
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
