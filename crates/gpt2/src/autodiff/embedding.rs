//! An embedding lookup with its backward pass written out: the weights' gradient is the
//! backend's [`Gpt2Backend::embedding_gradient`] (on CUDA and wgpu a kernel of a cube a
//! looked-up row, where burn's runs one thread a column down every looked-up row in turn).

use super::{float, primitive};
use crate::Gpt2Backend;
use burn::{
    backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
        Autodiff,
    },
    prelude::*,
    tensor::ops::IntTensor,
};

/// The rows of `weights` `[rows, d]` that `indices` `[batch, time]` name: `[batch, time, d]`.
pub(super) fn embedding<B: Gpt2Backend, C: CheckpointStrategy>(
    weights: Tensor<Autodiff<B, C>, 2>,
    indices: Tensor<Autodiff<B, C>, 2, Int>,
) -> Tensor<Autodiff<B, C>, 3> {
    let rows = weights.dims()[0];
    let weights = weights.into_primitive().tensor();
    let indices = Tensor::<B, 2, Int>::from_primitive(indices.into_primitive());
    let looked_up = B::embed(float(weights.primitive), indices.clone());
    let backward = EmbeddingBackward { rows };
    let output = match backward.prepare::<C>([weights.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(indices.into_primitive(), primitive(looked_up)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(looked_up)),
    };
    float(output)
}

#[derive(Debug)]
struct EmbeddingBackward {
    /// The weights' rows.
    rows: usize,
}

impl<B: Gpt2Backend> Backward<B, 1> for EmbeddingBackward {
    /// The indices.
    type State = IntTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [Some(node)] = ops.parents else { return };
        let d_output: Tensor<B, 3> = float(grads.consume::<B>(&ops.node));
        let [batch, time, d] = d_output.dims();
        let indices = Tensor::<B, 2, Int>::from_primitive(ops.state).reshape([batch * time]);
        let d_weights = B::embedding_gradient(d_output.reshape([batch * time, d]), indices, self.rows);
        grads.register::<B>(node.id, primitive(d_weights));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::{prelude::*, tensor::module::embedding};

    /// The same rows and the same weights' gradient as burn's lookup, differentiated, with
    /// rows looked up more than once and rows not at all.
    #[test]
    fn matches_burns_embedding() {
        let weights = leaf([11, 6]);
        let device = Default::default();
        let indices = Tensor::<Trained, 2, Int>::from_data([[3, 0, 3, 10], [7, 3, 0, 0]], &device);
        let upstream = leaf([2, 4, 6]).detach();

        let ours = Trained::embed(weights.clone(), indices.clone());
        let burns = embedding(weights.clone(), indices);
        assert_close("rows", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("weights", weights.grad(&ours).unwrap(), weights.grad(&burns).unwrap());
    }
}
