//! Training's backend: autodiff over the CPU or CUDA, with the backward passes of LayerNorm
//! (with the residual branch before it), attention, the MLP's GELU (with the bias before it),
//! the q/k/v projection's bias, bf16 products, the embeddings and the loss's cross-entropy
//! written out rather than differentiated operation by operation, for fewer GPU kernels a
//! layer (see `scripts/bench/launches.sh` and the example `launch_parts`).

mod attention;
mod bias_add;
mod bias_gelu;
mod cross_entropy;
mod embedding;
mod layer_norm;
mod mixed_matmul;

use crate::{
    backend::{float, primitive},
    AllocatorMemory, Dropout, Gpt2Backend, PreNorm, Precision, ResidualBranch,
};
use burn::{
    backend::{
        autodiff::{checkpoint::strategy::CheckpointStrategy, grads::Gradients, NodeId},
        Autodiff,
    },
    prelude::*,
    tensor::FloatDType,
};
use kernels::MaskStream;

impl<B: Gpt2Backend, C: CheckpointStrategy> Gpt2Backend for Autodiff<B, C> {
    fn layer_norm_rows(norm: PreNorm<'_, Self>, x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        match &norm.layer.beta {
            Some(beta) => layer_norm::layer_norm(x, norm.layer.gamma.val(), beta.val(), norm.epsilon, norm.output),
            None => norm.layer.forward(x).cast(norm.output),
        }
    }

    fn residual_layer_norm(
        residual: Tensor<Self, 2>,
        branch: ResidualBranch<Self>,
        norm: PreNorm<'_, Self>,
        continues: bool,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>) {
        layer_norm::residual_layer_norm(residual, branch, norm, continues)
    }

    fn bias_add(product: Tensor<Self, 2>, bias: Tensor<Self, 1>, operands: FloatDType) -> Tensor<Self, 2> {
        bias_add::bias_add(product, bias, operands)
    }

    fn embed(weights: Tensor<Self, 2>, indices: Tensor<Self, 2, Int>) -> Tensor<Self, 3> {
        embedding::embedding(weights, indices)
    }

    fn bias_gelu(product: Tensor<Self, 2>, bias: Tensor<Self, 1>, operands: FloatDType) -> Tensor<Self, 2> {
        bias_gelu::bias_gelu(product, bias, operands)
    }

    fn mixed_matmul(
        lhs: Tensor<Self, 2>,
        rhs: Tensor<Self, 2>,
        rounded_rhs: Option<Tensor<Self, 2>>,
        operands: FloatDType,
    ) -> Tensor<Self, 2> {
        mixed_matmul::mixed_matmul(lhs, rhs, rounded_rhs, operands)
    }

    fn self_attention(
        qkv: Tensor<Self, 2>,
        heads: usize,
        mask: Tensor<Self, 3, Bool>,
        dropout: Option<Dropout>,
        precision: Precision,
    ) -> Tensor<Self, 2> {
        attention::self_attention(qkv, heads, mask, dropout, precision)
    }

    /// The inner backend's draw: a mask has no gradient.
    fn dropout_keeps(stream: MaskStream, p: f64, kept: f32, len: usize, device: &Self::Device) -> Tensor<Self, 1> {
        Tensor::from_inner(B::dropout_keeps(stream, p, kept, len, device))
    }

    fn cross_entropy(
        logits: Tensor<Self, 2>,
        targets: Tensor<Self, 1, Int>,
        weights: Tensor<Self, 1>,
        gradient: FloatDType,
        vocab: usize,
    ) -> Tensor<Self, 1> {
        cross_entropy::cross_entropy(logits, targets, weights, gradient, vocab)
    }

    fn lm_head_columns(vocab: usize) -> usize {
        B::lm_head_columns(vocab)
    }

    fn allocator_memory(device: &Self::Device) -> Option<AllocatorMemory> {
        B::allocator_memory(device)
    }

    fn products_by_routine() -> bool {
        B::products_by_routine()
    }
}

/// `gradient` as `node`'s, where the node is tracked.
fn register<B: Gpt2Backend, const D: usize>(grads: &mut Gradients, node: Option<NodeId>, gradient: Tensor<B, D>) {
    if let Some(node) = node {
        grads.register::<B>(node, primitive(gradient));
    }
}

#[cfg(test)]
mod tests {
    use crate::Cpu;
    use burn::{backend::Autodiff, prelude::*, tensor::Distribution};

    pub(super) type Trained = Autodiff<Cpu>;

    /// A leaf that gets a gradient.
    pub(super) fn leaf<const D: usize>(dims: [usize; D]) -> Tensor<Trained, D> {
        Tensor::random(dims, Distribution::Uniform(-1.0, 1.0), &Default::default()).require_grad()
    }

    pub(super) fn assert_close<const D: usize>(what: &str, actual: Tensor<Cpu, D>, expected: Tensor<Cpu, D>) {
        assert_eq!(actual.dims(), expected.dims(), "{what}");
        let difference = (actual - expected.clone()).abs().max().into_scalar();
        let scale = expected.abs().max().into_scalar().max(1e-3);
        assert!(difference <= 1e-5 * scale, "{what}: max |difference| {difference} at scale {scale}");
    }
}
