//! A linear layer's bias added to its product, with its backward pass written out: the bias's
//! gradient is the backend's [`Gpt2Backend::column_sums`] (on CUDA and wgpu a kernel that
//! spreads the rows over many cubes, where burn's reduction runs one thread a column down every
//! row), which hands the product its gradient in the type of its operands in the same pass.
//! The forward pass is the backend's add, which burn's fusion on CUDA still merges into the
//! product before it.

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
    tensor::FloatDType,
};

/// `product + bias` for `product` `[rows, d]` and `bias` `[d]`; the product gets its gradient
/// in `operands`, the type of its operands.
pub(super) fn bias_add<B: Gpt2Backend, C: CheckpointStrategy>(
    product: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
    operands: FloatDType,
) -> Tensor<Autodiff<B, C>, 2> {
    let (product, bias) = (product.into_primitive().tensor(), bias.into_primitive().tensor());
    let sum = B::bias_add(float(product.primitive), float(bias.primitive), operands);
    let backward = BiasAddBackward { operands };
    float(backward.prepare::<C>([product.node, bias.node]).compute_bound().stateless(primitive(sum)))
}

#[derive(Debug)]
struct BiasAddBackward {
    operands: FloatDType,
}

impl<B: Gpt2Backend> Backward<B, 2> for BiasAddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_product, node_bias] = ops.parents;
        let d_sum: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let d_product = match node_bias {
            Some(node) => {
                let (d_bias, d_product) = B::column_sums(d_sum, self.operands);
                register(grads, Some(node.id), d_bias);
                d_product
            }
            None => d_sum,
        };
        register(grads, node_product.map(|node| node.id), d_product);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::tensor::{DType, FloatDType};

    /// The same values and gradients as burn's broadcast add, differentiated.
    #[test]
    fn matches_burns_add() {
        let (product, bias) = (leaf([6, 40]), leaf([40]));
        let upstream = leaf([6, 40]).detach();

        let ours = Trained::bias_add(product.clone(), bias.clone(), FloatDType::F32);
        let burns = product.clone() + bias.clone().unsqueeze();
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("product", product.grad(&ours).unwrap(), product.grad(&burns).unwrap());
        assert_close("bias", bias.grad(&ours).unwrap().unsqueeze::<2>(), bias.grad(&burns).unwrap().unsqueeze());
    }

    /// The product gets its gradient in its operands' type (f64 standing in for bf16: the CPU
    /// has none), as its backward pass reads it; the bias's is the sum of the unrounded one,
    /// and the gradients through a product are the same as when it rounds the f32 one itself.
    #[test]
    fn gives_the_product_its_gradient_in_its_operands_type() {
        let (x, weight, bias) = (leaf([6, 16]), leaf([16, 40]), leaf([40]));
        let upstream = leaf([6, 40]).detach();
        let run = |operands| {
            let product = Trained::mixed_matmul(x.clone(), weight.clone(), None, FloatDType::F64);
            let sum = Trained::bias_add(product, bias.clone(), operands);
            (sum * upstream.clone()).sum().backward()
        };
        let (full, rounded) = (run(FloatDType::F32), run(FloatDType::F64));
        assert_close("x", x.grad(&rounded).unwrap(), x.grad(&full).unwrap());
        assert_close("weight", weight.grad(&rounded).unwrap(), weight.grad(&full).unwrap());
        let bias_grad = |grads| bias.grad(grads).unwrap().unsqueeze::<2>();
        assert_close("bias", bias_grad(&rounded), bias_grad(&full));

        let product = leaf([6, 40]);
        let sum = Trained::bias_add(product.clone(), bias.clone(), FloatDType::F64);
        let grads = (sum * upstream).sum().backward();
        assert_eq!(product.grad(&grads).unwrap().dtype(), DType::F64, "the product's gradient's type");
        assert_eq!(bias.grad(&grads).unwrap().dtype(), DType::F32, "the bias's gradient's type");
    }
}
