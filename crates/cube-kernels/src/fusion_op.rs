//! A kernel's place in burn's fusion stream: fusion records operations and runs them later, so a
//! kernel of the backend under it goes in as a custom operation, which runs when the stream
//! reaches it, after the operations that write its inputs.

use burn::tensor::{
    backend::Backend,
    ops::{BoolTensor, FloatTensor, IntTensor},
    DType, Shape,
};
use burn_fusion::{
    stream::{Operation, OperationStreams},
    Fusion, FusionBackend, FusionRuntime,
};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use std::{fmt::Debug, vec::IntoIter};

/// A kernel's launch on the backend under fusion: from its arguments besides tensors and its
/// input tensors to its outputs, in the order registered.
pub(crate) type Launch<B, A> = fn(&A, Inputs<B>) -> Vec<FloatTensor<B>>;

/// A kernel's input tensors on the backend under fusion, taken in the order registered.
pub(crate) struct Inputs<B: Backend> {
    floats: IntoIter<FloatTensor<B>>,
    ints: IntoIter<IntTensor<B>>,
    bools: IntoIter<BoolTensor<B>>,
}

impl<B: Backend> Inputs<B> {
    pub(crate) fn float(&mut self) -> FloatTensor<B> {
        self.floats.next().expect("a float input registered")
    }

    pub(crate) fn int(&mut self) -> IntTensor<B> {
        self.ints.next().expect("an integer input registered")
    }

    pub(crate) fn bool(&mut self) -> BoolTensor<B> {
        self.bools.next().expect("a boolean input registered")
    }

    /// The float inputs not taken yet.
    pub(crate) fn floats(self) -> IntoIter<FloatTensor<B>> {
        self.floats
    }
}

#[derive(Debug)]
struct KernelOp<B: FusionBackend, A> {
    desc: CustomOpIr,
    /// The description's inputs: this many floats, then this many integers, then the booleans.
    floats: usize,
    ints: usize,
    args: A,
    launch: Launch<B, A>,
}

impl<B: FusionBackend, A: Debug + Send + Sync> Operation<B::FusionRuntime> for KernelOp<B, A> {
    fn execute(&self, handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>) {
        let (floats, rest) = self.desc.inputs.split_at(self.floats);
        let (ints, bools) = rest.split_at(self.ints);
        let floats: Vec<_> = floats.iter().map(|input| handles.get_float_tensor::<B>(input)).collect();
        let ints: Vec<_> = ints.iter().map(|input| handles.get_int_tensor::<B>(input)).collect();
        let bools: Vec<_> = bools.iter().map(|input| handles.get_bool_tensor::<B>(input)).collect();
        let inputs = Inputs { floats: floats.into_iter(), ints: ints.into_iter(), bools: bools.into_iter() };
        let results = (self.launch)(&self.args, inputs);
        assert_eq!(results.len(), self.desc.outputs.len(), "{}: an output for each registered", self.desc.id);
        for (output, result) in self.desc.outputs.iter().zip(results) {
            handles.register_float_tensor::<B>(&output.id, result);
        }
    }
}

/// `launch` registered in fusion's stream as the custom operation `name`, from the float tensors
/// `inputs` (at least one) to new tensors of the shapes `outputs` and the first input's type.
/// Returns those tensors, in order.
pub(crate) fn register_kernel<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    inputs: Vec<FloatTensor<Fusion<B>>>,
    outputs: &[Shape],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    let dtype = inputs.first().expect("a kernel with a float input").dtype;
    let outputs: Vec<_> = outputs.iter().map(|shape| (shape.clone(), dtype)).collect();
    register(name, inputs, Vec::new(), Vec::new(), &outputs, args, launch)
}

/// [`register_kernel`] with outputs of the shapes and types `outputs`.
pub(crate) fn register_kernel_typed<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    inputs: Vec<FloatTensor<Fusion<B>>>,
    outputs: &[(Shape, DType)],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    register(name, inputs, Vec::new(), Vec::new(), outputs, args, launch)
}

/// [`register_kernel_typed`] with integer tensors `ints` among the inputs, after the floats.
pub(crate) fn register_kernel_with_ints<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    floats: Vec<FloatTensor<Fusion<B>>>,
    ints: Vec<IntTensor<Fusion<B>>>,
    outputs: &[(Shape, DType)],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    register(name, floats, ints, Vec::new(), outputs, args, launch)
}

/// [`register_kernel_typed`] with boolean tensors `bools` among the inputs, after the floats.
pub(crate) fn register_kernel_with_bools<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    floats: Vec<FloatTensor<Fusion<B>>>,
    bools: Vec<BoolTensor<Fusion<B>>>,
    outputs: &[(Shape, DType)],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    register(name, floats, Vec::new(), bools, outputs, args, launch)
}

fn register<B: FusionBackend, A: Debug + Send + Sync + 'static>(
    name: &'static str,
    floats: Vec<FloatTensor<Fusion<B>>>,
    ints: Vec<IntTensor<Fusion<B>>>,
    bools: Vec<BoolTensor<Fusion<B>>>,
    outputs: &[(Shape, DType)],
    args: A,
    launch: Launch<B, A>,
) -> Vec<FloatTensor<Fusion<B>>> {
    let client = floats.first().expect("a kernel with a float input").client.clone();
    let outputs: Vec<TensorIr> = outputs
        .iter()
        .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape.clone(), *dtype))
        .collect();
    let (float_count, int_count) = (floats.len(), ints.len());
    let inputs: Vec<_> = floats.into_iter().chain(ints).chain(bools).collect();
    let streams = OperationStreams::with_inputs(&inputs);
    let inputs: Vec<TensorIr> = inputs.into_iter().map(|input| input.into_ir()).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    let op = KernelOp::<B, A> { desc: desc.clone(), floats: float_count, ints: int_count, args, launch };
    client.register(streams, OperationIr::Custom(desc), op)
}
