//! A mixed-precision product with its backward pass written out: the operands' gradients are
//! the backend's [`Gpt2Backend::mixed_matmul`] too (`d_lhs = d_product · rhsᵀ`,
//! `d_rhs = lhsᵀ · d_product`, on CUDA the same tensor-core routine as the forward pass),
//! from the operands as rounded for the forward pass, which are all it keeps. burn would
//! differentiate the casts and its own product: its products in the backward pass, bf16 out.

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
    tensor::{ops::FloatTensor, FloatDType},
};

/// `lhs · rhs` for `lhs` `[m, k]` and `rhs` `[k, n]`, both rounded to `operands`, in f32.
/// `rounded_rhs`: `rhs` already rounded (a constant), multiplied and kept in its place; `rhs`
/// still takes the gradient.
pub(super) fn mixed_matmul<B: Gpt2Backend, C: CheckpointStrategy>(
    lhs: Tensor<Autodiff<B, C>, 2>,
    rhs: Tensor<Autodiff<B, C>, 2>,
    rounded_rhs: Option<Tensor<Autodiff<B, C>, 2>>,
    operands: FloatDType,
) -> Tensor<Autodiff<B, C>, 2> {
    let (lhs, rhs) = (lhs.into_primitive().tensor(), rhs.into_primitive().tensor());
    let rounded_lhs: Tensor<B, 2> = float::<B, 2>(lhs.primitive).cast(operands);
    let rounded_rhs: Tensor<B, 2> = match rounded_rhs {
        Some(rounded) => rounded.inner().cast(operands),
        None => float::<B, 2>(rhs.primitive).cast(operands),
    };
    let product = B::mixed_matmul(rounded_lhs.clone(), rounded_rhs.clone(), None, operands);
    let backward = MixedMatmulBackward { operands };
    let output = match backward.prepare::<C>([lhs.node, rhs.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((primitive(rounded_lhs), primitive(rounded_rhs)), primitive(product)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(product)),
    };
    float(output)
}

#[derive(Debug)]
struct MixedMatmulBackward {
    operands: FloatDType,
}

impl<B: Gpt2Backend> Backward<B, 2> for MixedMatmulBackward {
    /// The operands, rounded.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_lhs, node_rhs] = ops.parents;
        // Rounded once for both products (each would round it again otherwise: a launch more).
        let d_product = float::<B, 2>(grads.consume::<B>(&ops.node)).cast(self.operands);
        let (lhs, rhs): (Tensor<B, 2>, Tensor<B, 2>) = (float(ops.state.0), float(ops.state.1));
        if let Some(node) = node_lhs {
            register(grads, Some(node.id), B::mixed_matmul(d_product.clone(), rhs.transpose(), None, self.operands));
        }
        if let Some(node) = node_rhs {
            register(grads, Some(node.id), B::mixed_matmul(lhs.transpose(), d_product, None, self.operands));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::tensor::FloatDType;

    /// The same values and gradients as burn's product, differentiated, with f32 operands (the
    /// CPU has no bf16): the node's wiring, each gradient from the right operand transposed.
    #[test]
    fn matches_burns_product() {
        let (lhs, rhs) = (leaf([6, 40]), leaf([40, 24]));
        let upstream = leaf([6, 24]).detach();

        let ours = Trained::mixed_matmul(lhs.clone(), rhs.clone(), None, FloatDType::F32);
        let burns = lhs.clone().matmul(rhs.clone());
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("lhs", lhs.grad(&ours).unwrap(), lhs.grad(&burns).unwrap());
        assert_close("rhs", rhs.grad(&ours).unwrap(), rhs.grad(&burns).unwrap());
    }

    /// With `rhs` already rounded (here a different matrix, so that the test sees which one is
    /// read): the product and `lhs`'s gradient are those of the rounded copy, and `rhs` still
    /// takes its gradient, `lhsᵀ · upstream`; the copy, a constant, takes none.
    #[test]
    fn reads_a_rounded_copy_and_gives_the_gradient_to_the_weight() {
        let (lhs, rhs) = (leaf([6, 40]), leaf([40, 24]));
        let rounded = leaf([40, 24]).detach();
        let upstream = leaf([6, 24]).detach();

        let ours = Trained::mixed_matmul(lhs.clone(), rhs.clone(), Some(rounded.clone()), FloatDType::F32);
        let expected = lhs.clone().matmul(rounded.clone());
        assert_close("output", ours.clone().inner(), expected.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let expected_grads = (expected * upstream.clone()).sum().backward();
        assert_close("lhs", lhs.grad(&ours).unwrap(), lhs.grad(&expected_grads).unwrap());
        assert_close("rhs", rhs.grad(&ours).unwrap(), lhs.inner().transpose().matmul(upstream.inner()));
        assert!(rounded.grad(&ours).is_none());
    }
}
