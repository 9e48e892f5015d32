//! The MLP's first layer's end, `gelu(product + bias)`, with its backward pass written out.
//!
//! burn 0.21 builds GPT-2's GELU from six operations and autodiff differentiates each, keeping
//! their inputs; the bias's gradient is then a reduction over the rows of its own. Here the
//! backward pass is the backend's [`Gpt2Backend::bias_gelu_backward`] (on CUDA and wgpu one
//! kernel for both gradients), and only the product and the bias are kept for it.

use super::{float, primitive, register};
use crate::Gpt2Backend;
use burn::{
    backend::autodiff::{
        checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
        grads::Gradients,
        ops::{Backward, Ops, OpsKind},
        Autodiff,
    },
    prelude::*,
    tensor::ops::FloatTensor,
};

/// GPT-2's GELU of `product + bias`, for `product` `[rows, d]` and `bias` `[d]`.
pub(super) fn bias_gelu<B: Gpt2Backend, C: CheckpointStrategy>(
    product: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
) -> Tensor<Autodiff<B, C>, 2> {
    let (product, bias) = (product.into_primitive().tensor(), bias.into_primitive().tensor());
    let hidden = B::bias_gelu(float(product.primitive.clone()), float(bias.primitive.clone()));
    let output = match BiasGeluBackward.prepare::<C>([product.node, bias.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((product.primitive, bias.primitive), primitive(hidden)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(hidden)),
    };
    float(output)
}

#[derive(Debug)]
struct BiasGeluBackward;

impl<B: Gpt2Backend> Backward<B, 2> for BiasGeluBackward {
    /// The product and the bias.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_product, node_bias] = ops.parents;
        let d_hidden: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let (product, bias) = ops.state;
        let (d_product, d_bias) = B::bias_gelu_backward(float(product), float(bias), d_hidden);
        register(grads, node_product.map(|node| node.id), d_product);
        register(grads, node_bias.map(|node| node.id), d_bias);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::tensor::activation::gelu_approximate;

    /// The same values and gradients as burn's GELU, differentiated operation by operation, on
    /// values wide enough to reach its flat tails.
    #[test]
    fn matches_burns_gelu() {
        let (product, bias) = ((leaf([6, 40]) * 4.0).detach().require_grad(), leaf([40]));
        let upstream = leaf([6, 40]).detach();

        let ours = Trained::bias_gelu(product.clone(), bias.clone());
        let burns = gelu_approximate(product.clone() + bias.clone().unsqueeze());
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("product", product.grad(&ours).unwrap(), product.grad(&burns).unwrap());
        assert_close("bias", bias.grad(&ours).unwrap().unsqueeze::<2>(), bias.grad(&burns).unwrap().unsqueeze());
    }
}
