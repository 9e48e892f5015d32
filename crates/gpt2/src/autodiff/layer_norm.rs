//! LayerNorm with its backward pass written out, alone or with the residual branch before it.
//!
//! burn 0.21 builds LayerNorm from a mean, a subtraction, a variance, a square root, a division,
//! a product and a sum (burn-backend `ops/modules/base.rs`), and autodiff differentiates each:
//! 19 GPU kernels forward and backward, twice a layer. The closed form needs four reductions
//! (two over each row, two over the rows for γ and β) and a couple of element-wise passes; the
//! backend computes the forward pass, the input's gradient and γ's and β's (on CUDA, one kernel
//! each: `Gpt2Backend::layer_norm_keeping`, `layer_norm_backward`,
//! `layer_norm_parameter_gradients`).
//!
//! Every LayerNorm of a block but the first layer's `ln_1` comes straight after a branch's end,
//! `stream = residual + dropout(product + bias)`. Those take the branch in too
//! ([`residual_layer_norm`]): its forward pass is in the LayerNorm's kernel, the product's and
//! the bias's gradients in the γ and β kernel, and the stream's gradient from the layers after
//! is added in the input's gradient kernel, where burn would draw a mask, add the two
//! gradients, and take an element-wise kernel and a reduction for the branch's own.

use super::{float, primitive, register};
use crate::{Dropout, Gpt2Backend, PreNorm, ResidualBranch};
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

/// Rows of the residual stream, or of a LayerNorm's output, `[batch × time, d]`.
type Rows<B, C> = Tensor<Autodiff<B, C>, 2>;

/// `(x − mean) / √(variance + ε) · γ + β` over each row of `x` `[rows, d]`, in the type `output`
/// (its gradient comes back in f32).
pub(super) fn layer_norm<B: Gpt2Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 2>,
    gamma: Tensor<Autodiff<B, C>, 1>,
    beta: Tensor<Autodiff<B, C>, 1>,
    epsilon: f64,
    output: FloatDType,
) -> Tensor<Autodiff<B, C>, 2> {
    let (x, gamma, beta) =
        (x.into_primitive().tensor(), gamma.into_primitive().tensor(), beta.into_primitive().tensor());
    let (gamma_value, beta_value) = (float(gamma.primitive.clone()), float(beta.primitive));
    let (y, normalized, inverse_deviation) =
        B::layer_norm_keeping(float(x.primitive), gamma_value, beta_value, epsilon, output);
    let output = match LayerNormBackward.prepare::<C>([x.node, gamma.node, beta.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            prep.finish((primitive(normalized), primitive(inverse_deviation), gamma.primitive), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    float(output)
}

/// `stream = residual + dropout(product + bias)` and `norm(stream)`: `(stream, norm's
/// output)`, the output in `norm.output`'s type. `continues`: the stream goes on to the next branch's end (all but the last).
///
/// Two operations of the graph: the stream, whose backward pass hands its gradient to the
/// residual unchanged, and the LayerNorm, whose backward pass gives every other gradient. The
/// stream's gradient is the sum of what the LayerNorm and the next branch's end give it: the
/// LayerNorm's backward pass runs after the next branch's end (a later node: burn runs a graph
/// from its deepest nodes back) and takes what that one gave, adds its own in its kernel, and
/// hands the sum on. For that the stream also lists the branch's product as a parent (it gives
/// it no gradient): otherwise it would be no deeper than the LayerNorm before it.
pub(super) fn residual_layer_norm<B: Gpt2Backend, C: CheckpointStrategy>(
    residual: Rows<B, C>,
    branch: ResidualBranch<Autodiff<B, C>>,
    norm: PreNorm<'_, Autodiff<B, C>>,
    continues: bool,
) -> (Rows<B, C>, Rows<B, C>) {
    let Some(beta) = &norm.layer.beta else {
        let stream = branch.added_to(residual);
        return (stream.clone(), norm.layer.forward(stream).cast(norm.output));
    };
    let ResidualBranch { product, bias, dropout, operands } = branch;
    let (residual, product, bias) =
        (residual.into_primitive().tensor(), product.into_primitive().tensor(), bias.into_primitive().tensor());
    let (gamma, beta) = (norm.layer.gamma.val().into_primitive().tensor(), beta.val().into_primitive().tensor());
    let (stream, y, normalized, inverse_deviation) = B::residual_layer_norm_keeping(
        float(residual.primitive),
        ResidualBranch { product: float(product.primitive), bias: float(bias.primitive), dropout, operands },
        float(gamma.primitive.clone()),
        float(beta.primitive),
        norm.epsilon,
        norm.output,
    );
    let stream =
        StreamBackward.prepare::<C>([residual.node, product.node.clone()]).compute_bound().stateless(primitive(stream));
    let parents = [stream.node.clone(), product.node, bias.node, gamma.node, beta.node];
    let output = match ResidualLayerNormBackward.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state =
                (primitive(normalized), primitive(inverse_deviation), gamma.primitive, dropout, operands, continues);
            prep.finish(state, primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    (float(stream), float(output))
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
            let (d_gamma, d_beta, _) = B::layer_norm_parameter_gradients(d_y.clone(), normalized.clone(), None);
            register(grads, node_gamma.map(|node| node.id), d_gamma);
            register(grads, node_beta.map(|node| node.id), d_beta);
        }
        if let Some(node) = node_x {
            let d_x = B::layer_norm_backward(d_y, normalized, inverse_deviation, gamma, None);
            grads.register::<B>(node.id, primitive(d_x));
        }
    }
}

/// The stream after a branch's end: its gradient goes to the residual as it is (the branch's
/// product gets its own from [`ResidualLayerNormBackward`]).
#[derive(Debug)]
struct StreamBackward;

impl<B: Gpt2Backend> Backward<B, 2> for StreamBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_residual, _] = ops.parents;
        let d_stream = grads.consume::<B>(&ops.node);
        if let Some(node) = node_residual {
            grads.register::<B>(node.id, d_stream);
        }
    }
}

#[derive(Debug)]
struct ResidualLayerNormBackward;

impl<B: Gpt2Backend> Backward<B, 5> for ResidualLayerNormBackward {
    /// The normalised rows, their inverse deviations, γ, the branch's dropout and its
    /// product's operands' type, and whether the stream continues past this LayerNorm.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Option<Dropout>, FloatDType, bool);

    /// As [`LayerNormBackward`], with the stream's gradient `d_x` the LayerNorm's input gradient
    /// plus what the next branch's end gave the stream; then the product's gradient is `d_x`
    /// through dropout (in its operands' type, as its own backward pass reads it) and the
    /// bias's its sum over the rows.
    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_stream, node_product, node_bias, node_gamma, node_beta] = ops.parents;
        let d_y: Tensor<B, 2> = float(grads.consume::<B>(&ops.node));
        let (normalized, inverse_deviation, gamma, dropout, operands, continues) = ops.state;
        let (normalized, inverse_deviation, gamma) =
            (float::<B, 2>(normalized), float::<B, 2>(inverse_deviation), float::<B, 1>(gamma));
        let d_later = match (&node_stream, continues) {
            (Some(node), true) => Some(float::<B, 2>(grads.consume::<B>(node))),
            _ => None,
        };
        let d_x = B::layer_norm_backward(d_y.clone(), normalized.clone(), inverse_deviation, gamma, d_later);
        let (d_gamma, d_beta, branch) =
            B::layer_norm_parameter_gradients(d_y, normalized, Some((d_x.clone(), dropout, operands)));
        let (d_product, d_bias) = branch.expect("the branch's gradients");
        register(grads, node_gamma.map(|node| node.id), d_gamma);
        register(grads, node_beta.map(|node| node.id), d_beta);
        register(grads, node_product.map(|node| node.id), d_product);
        register(grads, node_bias.map(|node| node.id), d_bias);
        register(grads, node_stream.map(|node| node.id), d_x);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_close, leaf, Trained};
    use crate::{Dropout, DropoutMasks, Gpt2Backend, PreNorm, ResidualBranch};
    use burn::{
        module::Param,
        nn::{LayerNorm, LayerNormConfig},
        prelude::*,
        tensor::{DType, FloatDType},
    };

    /// A LayerNorm of `d` with γ and β away from 1 and 0.
    fn norm(d: usize, epsilon: f64) -> LayerNorm<Trained> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init::<Trained>(&Default::default());
        norm.gamma = Param::from_tensor((leaf([d]) + 1.0).detach().require_grad());
        norm.beta = Some(Param::from_tensor(leaf([d]).detach().require_grad()));
        norm
    }

    /// Two branch ends and their LayerNorms in a row, the second branch computed from the first
    /// LayerNorm's output (as in a block): the same values and gradients as burn's operations
    /// differentiated one by one, with dropout and without.
    #[test]
    fn residual_layer_norms_match_burns_operations() {
        let (rows, d, epsilon) = (6, 48, 1e-5);
        for p in [0.0, 0.25] {
            let masks = DropoutMasks::new(3, 1, 0).layer(0);
            let dropouts = [Dropout::at(p, Some(masks.attention_output())), Dropout::at(p, Some(masks.mlp_output()))];
            let norms = [norm(d, epsilon), norm(d, epsilon)];
            let x = (leaf([rows, d]) * 3.0).detach().require_grad();
            let [first, second] = [leaf([rows, d]), leaf([d, d])];
            let biases = [leaf([d]), leaf([d])];
            let upstream = [leaf([rows, d]).detach(), leaf([rows, d]).detach()];

            // `ours` runs the written-out operation, `burns` the one it replaces.
            let run = |ours: bool| {
                let step = |residual: Tensor<Trained, 2>, product, i: usize, continues| {
                    let branch = ResidualBranch {
                        product,
                        bias: biases[i].clone(),
                        dropout: dropouts[i],
                        operands: FloatDType::F32,
                    };
                    if ours {
                        let norm = PreNorm { layer: &norms[i], epsilon, output: FloatDType::F32 };
                        Trained::residual_layer_norm(residual, branch, norm, continues)
                    } else {
                        let stream = branch.added_to(residual);
                        (stream.clone(), norms[i].forward(stream))
                    }
                };
                let (stream, y) = step(x.clone(), first.clone(), 0, true);
                let (_, z) = step(stream, y.clone().matmul(second.clone()), 1, false);
                let loss = (y.clone() * upstream[0].clone()).sum() + (z.clone() * upstream[1].clone()).sum();
                (y.inner(), z.inner(), loss.backward())
            };
            let (ours, burns) = (run(true), run(false));
            assert_close(&format!("p {p}: first output"), ours.0, burns.0);
            assert_close(&format!("p {p}: second output"), ours.1, burns.1);
            let (ours, burns) = (&ours.2, &burns.2);
            assert_close(&format!("p {p}: x"), x.grad(ours).unwrap(), x.grad(burns).unwrap());
            assert_close(&format!("p {p}: first product"), first.grad(ours).unwrap(), first.grad(burns).unwrap());
            assert_close(&format!("p {p}: second's weight"), second.grad(ours).unwrap(), second.grad(burns).unwrap());
            for (i, norm) in norms.iter().enumerate() {
                let [bias, gamma, beta] = [&biases[i], &norm.gamma.val(), &norm.beta.as_ref().unwrap().val()]
                    .map(|param| (param.grad(ours).unwrap(), param.grad(burns).unwrap()));
                for (what, (ours, theirs)) in [("bias", bias), ("gamma", gamma), ("beta", beta)] {
                    assert_close(&format!("p {p}: {what} {i}"), ours.unsqueeze::<2>(), theirs.unsqueeze());
                }
            }
        }
    }

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

        let pre_norm = PreNorm { layer: &norm, epsilon, output: FloatDType::F32 };
        let ours = <Trained as Gpt2Backend>::layer_norm_rows(pre_norm, x.clone());
        let burns = norm.forward(x.clone());
        assert_close("output", ours.clone().inner(), burns.clone().inner());

        let ours = (ours * upstream.clone()).sum().backward();
        let burns = (burns * upstream).sum().backward();
        assert_close("x", x.grad(&ours).unwrap(), x.grad(&burns).unwrap());
        for (what, param) in [("gamma", &norm.gamma), ("beta", norm.beta.as_ref().unwrap())] {
            assert_close(what, param.val().grad(&ours).unwrap(), param.val().grad(&burns).unwrap());
        }
    }

    /// Written in the type of the products' operands (f64 standing in for bf16: the CPU has
    /// none), alone and after a branch whose end is such a product: the output is the f32 one
    /// in that type, and the gradients through the products are the same as when each product
    /// rounds its f32 operand (the output, the branch's gradient) itself.
    #[test]
    fn writes_in_the_type_of_the_products_around_it() {
        let (rows, d, epsilon) = (6, 48, 1e-5);
        let norm = norm(d, epsilon);
        let (x, hidden, end, bias) = (leaf([rows, 32]), leaf([rows, 32]), leaf([32, d]), leaf([d]));
        let (residual, weight) = (leaf([rows, d]), leaf([d, 24]));
        let upstream = leaf([rows, 24]).detach();
        for with_branch in [false, true] {
            // `written`: the type the LayerNorm writes its output and the branch's gradient in.
            let run = |written| {
                let norm = PreNorm { layer: &norm, epsilon, output: written };
                let y = if with_branch {
                    let product = Trained::mixed_matmul(hidden.clone(), end.clone(), None, FloatDType::F64);
                    let branch = ResidualBranch { product, bias: bias.clone(), dropout: None, operands: written };
                    Trained::residual_layer_norm(residual.clone(), branch, norm, false).1
                } else {
                    Trained::layer_norm_rows(norm, x.clone().matmul(end.clone()))
                };
                let z = Trained::mixed_matmul(y.clone(), weight.clone(), None, FloatDType::F64);
                (y, (z * upstream.clone()).sum().backward())
            };
            let ((full, full_grads), (rounded, rounded_grads)) = (run(FloatDType::F32), run(FloatDType::F64));
            let what = |name| format!("branch {with_branch}: {name}");
            assert_eq!(rounded.dtype(), DType::F64, "{}", what("the output's type"));
            let host = |y: Tensor<Trained, 2>| y.inner().into_data().convert::<f64>().to_vec::<f64>().unwrap();
            assert_eq!(host(rounded), host(full.cast(FloatDType::F64)), "{}", what("output"));
            let mut matrices = vec![("end", end.clone()), ("weight", weight.clone())];
            let mut vectors = vec![("gamma", norm.gamma.val()), ("beta", norm.beta.as_ref().unwrap().val())];
            if with_branch {
                matrices.extend([("residual", residual.clone()), ("hidden", hidden.clone())]);
                vectors.push(("bias", bias.clone()));
            } else {
                matrices.push(("x", x.clone()));
            }
            for (name, param) in matrices {
                assert_close(&what(name), param.grad(&rounded_grads).unwrap(), param.grad(&full_grads).unwrap());
            }
            for (name, param) in vectors {
                let (ours, theirs) = (param.grad(&rounded_grads).unwrap(), param.grad(&full_grads).unwrap());
                assert_close(&what(name), ours.unsqueeze::<2>(), theirs.unsqueeze());
            }
        }
    }

    /// A branch's product gets its gradient in its operands' type (f64 standing in for bf16),
    /// which its own backward pass reads.
    #[test]
    fn gives_a_branch_product_its_gradient_in_its_operands_type() {
        let (rows, d, epsilon) = (6, 48, 1e-5);
        let norm = norm(d, epsilon);
        let (residual, product) = (leaf([rows, d]), leaf([rows, d]));
        let operands = FloatDType::F64;
        let branch = ResidualBranch { product: product.clone(), bias: leaf([d]), dropout: None, operands };
        let pre_norm = PreNorm { layer: &norm, epsilon, output: FloatDType::F32 };
        let (_, y) = Trained::residual_layer_norm(residual, branch, pre_norm, false);
        let grads = (y * leaf([rows, d]).detach()).sum().backward();
        assert_eq!(product.grad(&grads).unwrap().dtype(), DType::F64);
    }
}
