//! LayerNorm with its backward pass written out.
//!
//! burn 0.21 builds LayerNorm from a mean, a subtraction, a variance, a square root, a division,
//! a product and a sum (burn-backend `ops/modules/base.rs`), and autodiff differentiates each:
//! 19 GPU kernels forward and backward, twice a layer. The closed form needs four reductions
//! (two over each row, two over the rows for γ and β) and a couple of element-wise passes; the
//! backend computes the forward pass, the input's gradient and γ's and β's (on CUDA, one kernel
//! each: `Gpt2Backend::layer_norm_keeping`, `layer_norm_backward`,
//! `layer_norm_parameter_gradients`).

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
    tensor::ops::FloatTensor,
};

/// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]`.
pub(super) fn layer_norm<B: Gpt2Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    gamma: Tensor<Autodiff<B, C>, 1>,
    beta: Tensor<Autodiff<B, C>, 1>,
    epsilon: f64,
) -> Tensor<Autodiff<B, C>, 2> {
    let (x, gamma, beta) =
        (x.into_primitive().tensor(), gamma.into_primitive().tensor(), beta.into_primitive().tensor());
    let (y, normalized, inverse_deviation) =
        B::layer_norm_keeping(float(x.primitive), float(gamma.primitive.clone()), float(beta.primitive), epsilon);
    let output = match LayerNormBackward.prepare::<C>([x.node, gamma.node, beta.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            prep.finish((primitive(normalized), primitive(inverse_deviation), gamma.primitive), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    float(output)
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Gpt2Backend> Backward<B, 3> for LayerNormBackward {
    /// The normalised rows, their inverse deviations and γ.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    /// With `n` the normalised rows and `g = dy · γ`:
    /// `dx = (g − mean(g) − n · mean(g · n)) / √(variance + ε)` (means over each row),
    /// `dγ = Σ_rows dy · n`, `dβ = Σ_rows dy`.
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let d_y: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let (normalized, inverse_deviation, gamma) = ops.state;
        let (normalized, inverse_deviation, gamma) =
            (float::<B, 2>(normalized), float::<B, 2>(inverse_deviation), float::<B, 1>(gamma));
        if node_gamma.is_some() || node_beta.is_some() {
            let (d_gamma, d_beta) = B::layer_norm_parameter_gradients(d_y.clone(), normalized.clone());
            if let Some(node) = node_gamma {
                grads.register::<B>(node.id, primitive(d_gamma));
            }
            if let Some(node) = node_beta {
                grads.register::<B>(node.id, primitive(d_beta));
            }
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, primitive(B::layer_norm_backward(d_y, normalized, inverse_deviation, gamma)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::Gpt2Backend;
    use burn::{module::Param, nn::LayerNormConfig};

    /// The same values and gradients as burn's LayerNorm, differentiated operation by operation.
    #[test]
    fn matches_burns_layer_norm() {
        let epsilon = 1e-5;
        let mut norm = LayerNormConfig::new(48).with_epsilon(epsilon).init::<Trained>(&Default::default());
        norm.gamma = Param::from_tensor((leaf([48]) + 1.0).detach());
        norm.beta = Some(Param::from_tensor(leaf([48]).detach()));
        // Rows of different means and spreads; an upstream gradient that is not all ones.
        let x = (leaf([6, 48]) * leaf([6, 1]).detach() * 4.0 + leaf([6, 1]).detach() * 3.0).detach().require_grad();
        let upstream = leaf([6, 48]).detach();

        let ours = <Trained as Gpt2Backend>::layer_norm_rows(&norm, epsilon, x.clone());
        let burns = norm.forward(x.clone());
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("x", x.grad(&ours).unwrap(), x.grad(&burns).unwrap());
        for (what, param) in [("gamma", &norm.gamma), ("beta", norm.beta.as_ref().unwrap())] {
            assert_close(what, param.val().grad(&ours).unwrap(), param.val().grad(&burns).unwrap());
        }
    }
}
