//! Dropout's keep mask drawn on the device, the same words as `kernels::dropout_keeps` draws on
//! the CPU: one unit a Philox4x32-10 call, four elements. burn's own random numbers come from a
//! generator seeded from the host, which makes each step wait for the device's queued work and
//! ties a mask to the order in which masks are drawn.

use crate::{
    grid::{unit_grid, unit_piece},
    philox::philox4x32_10,
};
use burn::tensor::{
    backend::{Backend, BackendTypes},
    ops::{FloatTensor, FloatTensorOps},
    Device, Element, FloatDType, Shape,
};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};
use cubecl::prelude::*;
use kernels::{drop_threshold, MaskStream};

pub trait DropoutKeeps: Backend {
    /// `[len]`: `kept` where dropout at probability `p` keeps element `i` of `stream`, 0.0 where
    /// it drops it, as `kernels::dropout_keeps` has them (with `kept` 1.0). `kept` is dropout's
    /// scale, `1 / (1 − p)`, for a mask that scales as it drops.
    fn dropout_keeps(stream: MaskStream, p: f64, kept: f32, len: usize, device: &Device<Self>) -> FloatTensor<Self>;
}

/// Unit `block` writes elements `4 · block … 4 · block + 3` from Philox's four words at counter
/// `[block, stream…]` under `key`.
#[cube(launch)]
fn dropout_keeps_kernel<F: Float>(
    keeps: &mut Tensor<F>,
    key0: u32,
    key1: u32,
    stream0: u32,
    stream1: u32,
    stream2: u32,
    threshold: u32,
    kept: f32,
) {
    let block = unit_piece();
    let first = block as usize * 4;
    if first >= keeps.len() {
        terminate!();
    }
    let words = philox4x32_10(block, stream0, stream1, stream2, key0, key1);
    let kept = F::cast_from(kept);
    write_keep::<F>(keeps, first, words.w0, threshold, kept);
    write_keep::<F>(keeps, first + 1, words.w1, threshold, kept);
    write_keep::<F>(keeps, first + 2, words.w2, threshold, kept);
    write_keep::<F>(keeps, first + 3, words.w3, threshold, kept);
}

#[cube]
fn write_keep<F: Float>(keeps: &mut Tensor<F>, index: usize, word: u32, threshold: u32, kept: F) {
    if index < keeps.len() {
        keeps[index] = select(word >= threshold, kept, F::new(0.0));
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DropoutKeeps for CubeBackend<R, F, I, BT> {
    fn dropout_keeps(stream: MaskStream, p: f64, kept: f32, len: usize, device: &Device<Self>) -> FloatTensor<Self> {
        let keeps = Self::float_empty(Shape::new([len]), device, FloatDType::from(F::dtype()));
        let (cubes, units) = unit_grid(len.div_ceil(4));
        dropout_keeps_kernel::launch::<F, R>(
            &keeps.client,
            cubes,
            units,
            keeps.clone().into_tensor_arg(),
            stream.key[0],
            stream.key[1],
            stream.stream[0],
            stream.stream[1],
            stream.stream[2],
            drop_threshold(p),
            kept,
        );
        keeps
    }
}

impl<B: FusionBackend + DropoutKeeps> DropoutKeeps for Fusion<B> {
    fn dropout_keeps(stream: MaskStream, p: f64, kept: f32, len: usize, device: &Device<Self>) -> FloatTensor<Self> {
        #[derive(Clone, Debug)]
        struct DropoutKeepsOp<B: FusionBackend> {
            desc: CustomOpIr,
            stream: MaskStream,
            p: f64,
            kept: f32,
            device: Device<B>,
        }

        impl<B: FusionBackend + DropoutKeeps> Operation<B::FusionRuntime> for DropoutKeepsOp<B> {
            fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
                let ([], [keeps]) = self.desc.as_fixed();
                let drawn = B::dropout_keeps(self.stream, self.p, self.kept, keeps.shape.num_elements(), &self.device);
                handles.register_float_tensor::<B>(&keeps.id, drawn);
            }
        }

        let client = burn_fusion::get_client::<B>(device);
        let dtype = <B as BackendTypes>::FloatElem::dtype();
        let keeps = TensorIr::uninit(client.create_empty_handle(), Shape::new([len]), dtype);
        let desc = CustomOpIr::new("dropout_keeps", &[], &[keeps]);
        client
            .register(
                OperationStreams::default(),
                OperationIr::Custom(desc.clone()),
                DropoutKeepsOp::<B> { desc, stream, p, kept, device: device.clone() },
            )
            .output()
    }
}
