//! A kernel's place in burn's fusion stream: fusion records operations and runs them later, so a
//! kernel of the backend under it goes in as a custom operation, which runs when the stream
//! reaches it, after the operations that write its inputs.

use burn::tensor::{ops::FloatTensor, Shape};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::fmt::Debug;

/// A kernel's launch on the backend under fusion: from its arguments besides tensors and its
/// input tensors, in the order they were registered, to its outputs, in the order registered.
pub(crate) type Launch<B, A> = fn(&A, Vec<FloatTensor<B>>) -> Vec<FloatTensor<B>>;

#[derive(Debug)]
struct KernelOp<B: FusionBackend, A> {
    desc: CustomOpIr,
    args: A,
    launch: Launch<B, A>,
}

impl<B: FusionBackend, A: Debug + Send + Sync> Operation<B::FusionRuntime> for KernelOp<B, A> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let inputs = self.desc.inputs.iter().map(|input| handles.get_float_tensor::<B>(input)).collect();
        let results = (self.launch)(&self.args, inputs);
        assert_eq!(results.len(), self.desc.outputs.len(), "{}: an output for each registered", self.desc.id);
        for (output, result) in self.desc.outputs.iter().zip(results) {
            handles.register_float_tensor::<B>(&output.id, result);
        }
    }
}

/// `launch` registered in fusion's stream as the custom operation `name`, from `inputs` (float
/// tensors, at least one) to new tensors of the shapes `outputs` and the first input's type.
/// Returns those tensors, in order.
pub(crate) fn register_kernel<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    inputs: Vec<FloatTensor<Fusion<B>>>,
    outputs: &[Shape],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    let first = inputs.first().expect("a kernel with an input");
    let (client, dtype) = (first.client.clone(), first.dtype);
    let outputs: Vec<TensorIr> =
        outputs.iter().map(|shape| TensorIr::uninit(client.create_empty_handle(), shape.clone(), dtype)).collect();
    let streams = OperationStreams::with_inputs(&inputs);
    let inputs: Vec<TensorIr> = inputs.into_iter().map(|input| input.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    client.register(streams, OperationIr::Custom(desc.clone()), KernelOp::<B, A> { desc, args, launch })
}
