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
    tensor::{ops::FloatTensor, FloatDType},
};

/// GPT-2's GELU of `product + bias`, for `product` `[rows, d]` and `bias` `[d]`, written in
/// `operands`, the type of the products on either side: the one that reads the output, and
/// `product`, whose gradient the backward pass writes in it.
pub(super) fn bias_gelu<B: Gpt2Backend, C: CheckpointStrategy>(
    product: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
    operands: FloatDType,
) -> Tensor<Autodiff<B, C>, 2> {
    let (product, bias) = (product.into_primitive().tensor(), bias.into_primitive().tensor());
    let hidden = B::bias_gelu(float(product.primitive.clone()), float(bias.primitive.clone()), operands);
    let backward = BiasGeluBackward { operands };
    let output = match backward.prepare::<C>([product.node, bias.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((product.primitive, bias.primitive), primitive(hidden)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(hidden)),
    };
    float(output)
}

#[derive(Debug)]
struct BiasGeluBackward {
    operands: FloatDType,
}

impl<B: Gpt2Backend> Backward<B, 2> for BiasGeluBackward {
    /// The product and the bias.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_product, node_bias] = ops.parents;
        let d_hidden: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let (product, bias) = ops.state;
        let (d_product, d_bias) = B::bias_gelu_backward(float(product), float(bias), d_hidden, self.operands);
        register(grads, node_product.map(|node| node.id), d_product);
        register(grads, node_bias.map(|node| node.id), d_bias);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::{
        prelude::*,
        tensor::{activation::gelu_approximate, DType, FloatDType},
    };

    /// The same values and gradients as burn's GELU, differentiated operation by operation, on
    /// values wide enough to reach its flat tails.
    #[test]
    fn matches_burns_gelu() {
        let (product, bias) = ((leaf([6, 40]) * 4.0).detach().require_grad(), leaf([40]));
        let upstream = leaf([6, 40]).detach();

        let ours = Trained::bias_gelu(product.clone(), bias.clone(), FloatDType::F32);
        let burns = gelu_approximate(product.clone() + bias.clone().unsqueeze());
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("product", product.grad(&ours).unwrap(), product.grad(&burns).unwrap());
        assert_close("bias", bias.grad(&ours).unwrap().unsqueeze::<2>(), bias.grad(&burns).unwrap().unsqueeze());
    }

    /// Written in the type of the products around it (f64 standing in for bf16: the CPU has
    /// none): the output is the f32 one in that type, the product gets its gradient in it, and
    /// the gradients through the products are the same as when each product rounds its f32
    /// operand (the output, the product's gradient) itself.
    #[test]
    fn writes_in_the_type_of_the_products_around_it() {
        let (x, first, bias, second) = (leaf([6, 16]), leaf([16, 40]), leaf([40]), leaf([40, 24]));
        let upstream = leaf([6, 24]).detach();
        // `written`: the type the output and the product's gradient are written in.
        let run = |written| {
            let product = Trained::mixed_matmul(x.clone(), first.clone(), None, FloatDType::F64);
            let hidden = Trained::bias_gelu(product, bias.clone(), written);
            let z = Trained::mixed_matmul(hidden.clone(), second.clone(), None, FloatDType::F64);
            (hidden, (z * upstream.clone()).sum().backward())
        };
        let ((full, full_grads), (rounded, rounded_grads)) = (run(FloatDType::F32), run(FloatDType::F64));
        assert_eq!(rounded.dtype(), DType::F64, "the output's type");
        let host = |y: Tensor<Trained, 2>| y.inner().into_data().convert::<f64>().to_vec::<f64>().unwrap();
        assert_eq!(host(rounded), host(full.cast(FloatDType::F64)), "the output");
        for (name, param) in [("x", &x), ("first", &first), ("second", &second)] {
            assert_close(name, param.grad(&rounded_grads).unwrap(), param.grad(&full_grads).unwrap());
        }
        let bias_grad = |grads| bias.grad(grads).unwrap().unsqueeze::<2>();
        assert_close("bias", bias_grad(&rounded_grads), bias_grad(&full_grads));

        let product = leaf([6, 40]);
        let hidden = Trained::bias_gelu(product.clone(), bias.clone(), FloatDType::F64);
        let z = Trained::mixed_matmul(hidden, second.clone(), None, FloatDType::F64);
        let grads = (z * upstream).sum().backward();
        assert_eq!(product.grad(&grads).unwrap().dtype(), DType::F64, "the product's gradient's type");
    }
}
