//! Many tensors added, each to its own stretch of one flat buffer, in a launch for every
//! [`MAX_PIECES`] of them: the train stage sums each micro-batch's gradients (292 tensors at
//! gpt2-medium's shape) into the optimizer's flat buffers, where burn takes a launch a tensor
//! (and another to copy it into its stretch at the end of the step).

use burn::tensor::ops::FloatTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::{prelude::*, CubeCount, CubeDim};
use std::marker::PhantomData;

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
        let buffer = if buffer.can_mut() && buffer.is_contiguous() { buffer } else { buffer.copy() };
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
                assert!(piece.is_contiguous(), "the pieces are whole tensors, not views");
                tensors.push(piece.clone().into_tensor_arg());
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
        #[derive(Clone, Debug)]
        struct AddOp<B> {
            desc: CustomOpIr,
            starts: Vec<usize>,
            backend: PhantomData<B>,
        }

        impl<B: FusionBackend + AddToStretches> Operation<B::FusionRuntime> for AddOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let (buffer, pieces) = self.desc.inputs.split_first().expect("the buffer comes first");
                let pieces = pieces
                    .iter()
                    .zip(&self.starts)
                    .map(|(piece, &start)| (handles.get_float_tensor::<B>(piece), start));
                let pieces = pieces.collect();
                let summed = B::add_to_stretches(handles.get_float_tensor::<B>(buffer), pieces);
                handles.register_float_tensor::<B>(&self.desc.outputs[0].id, summed);
            }
        }

        let client = buffer.client.clone();
        let streams =
            OperationStreams::with_inputs(std::iter::once(&buffer).chain(pieces.iter().map(|(piece, _)| piece)));
        let output = TensorIr::uninit(client.create_empty_handle(), buffer.shape.clone(), buffer.dtype);
        let starts = pieces.iter().map(|&(_, start)| start).collect();
        let inputs: Vec<TensorIr> =
            std::iter::once(buffer.into_ir()).chain(pieces.into_iter().map(|(piece, _)| piece.into_ir())).collect();
        let desc = CustomOpIr::new("add_to_stretches", &inputs, &[output]);
        let op = AddOp::<B> { desc: desc.clone(), starts, backend: PhantomData };
        let [summed] = client.register(streams, OperationIr::Custom(desc), op).outputs();
        summed
    }
}
