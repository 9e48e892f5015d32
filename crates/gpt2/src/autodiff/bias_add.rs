//! A linear layer's bias added to its product, with its backward pass written out: the bias's
//! gradient is the backend's [`Gpt2Backend::column_sums`] (on CUDA and wgpu a kernel that
//! spreads the rows over many cubes, where burn's reduction runs one thread a column down every
//! row). The forward pass is the backend's add, which burn's fusion on CUDA still merges into
//! the product before it.

use super::{float, primitive, register};
use crate::Gpt2Backend;
use burn::{
    backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops},
        Autodiff,
    },
    prelude::*,
};

/// `product + bias` for `product` `[rows, d]` and `bias` `[d]`.
pub(super) fn bias_add<B: Gpt2Backend, C: CheckpointStrategy>(
    product: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
) -> Tensor<Autodiff<B, C>, 2> {
    let (product, bias) = (product.into_primitive().tensor(), bias.into_primitive().tensor());
    let sum = B::bias_add(float(product.primitive), float(bias.primitive));
    float(BiasAddBackward.prepare::<C>([product.node, bias.node]).compute_bound().stateless(primitive(sum)))
}

#[derive(Debug)]
struct BiasAddBackward;

impl<B: Gpt2Backend> Backward<B, 2> for BiasAddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_product, node_bias] = ops.parents;
        let d_sum: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        if let Some(node) = node_bias {
            register(grads, Some(node.id), B::column_sums(d_sum.clone()));
        }
        register(grads, node_product.map(|node| node.id), d_sum);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;

    /// The same values and gradients as burn's broadcast add, differentiated.
    #[test]
    fn matches_burns_add() {
        let (product, bias) = (leaf([6, 40]), leaf([40]));
        let upstream = leaf([6, 40]).detach();

        let ours = Trained::bias_add(product.clone(), bias.clone());
        let burns = product.clone() + bias.clone().unsqueeze();
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("product", product.grad(&ours).unwrap(), product.grad(&burns).unwrap());
        assert_close("bias", bias.grad(&ours).unwrap().unsqueeze::<2>(), bias.grad(&burns).unwrap().unsqueeze());
    }
}
