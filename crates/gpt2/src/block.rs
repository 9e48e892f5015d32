use crate::{
    attention::CausalSelfAttention, dropout::LayerMasks, mlp::Mlp, Gpt2Backend, Gpt2Config, LayerCache, RoundedWeights,
};
use burn::{
    module::{Module, Param},
    nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig},
    prelude::*,
    tensor::FloatDType,
};

/// One transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
///
/// The residual stream `x` is kept as `[batch × time, n_embd]` rows, not `[batch, time,
/// n_embd]`: on a 3-D input burn takes a linear layer's weight gradient as one product per
/// batch entry and a sum over them (burn-backend `ops/modules/linear.rs`), and the gradient of
/// every weight or bias broadcast over two dimensions as two reductions. On rows each is one
/// product or one reduction: fewer GPU kernels a layer. Attention alone needs `batch` and
/// `time`, which it reads off the mask.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: CausalSelfAttention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: Mlp<B>,
    /// The LayerNorms' ε, which burn's `LayerNorm` keeps to itself.
    #[module(skip)]
    layer_norm_epsilon: f64,
}

/// One of a block's LayerNorms with its ε (burn's `LayerNorm` keeps ε to itself), handed to the
/// branch after it: a backend may run it inside the branch's first product.
#[derive(Debug, Clone, Copy)]
pub struct PreNorm<'a, B: Backend> {
    pub layer: &'a LayerNorm<B>,
    pub epsilon: f64,
    /// The type its output is written in: the operands' type of the product that reads it
    /// ([`Precision::operands`](crate::Precision::operands)), so that the product need not round it in a kernel of its own.
    pub output: FloatDType,
}

impl<B: Gpt2Backend> Block<B> {
    /// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`. Each branch takes the residual stream and
    /// its LayerNorm and returns the stream with its output added, so that a backend can fuse
    /// the LayerNorm into the branch's first product and the add into its last. Nothing is
    /// dropped: training runs [`forward_training`].
    ///
    /// [`forward_training`]: Block::forward_training
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        mask: Tensor<B, 3, Bool>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 2> {
        let (ln_1, ln_2) = self.pre_norms();
        let x = self.attn.forward(x, ln_1, mask, cache);
        self.mlp.forward(x, ln_2)
    }

    /// The block as training runs it: from the stream `x` and `ln_1`'s output over it, `normed`,
    /// to the stream after both branches and `next`'s output over it (the next block's `ln_1`,
    /// or `ln_f`). Each branch's end, its dropout and residual add go into the LayerNorm after
    /// it ([`Gpt2Backend::residual_layer_norm`]). `continues`: another block follows.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_training(
        &self,
        x: Tensor<B, 2>,
        normed: Tensor<B, 2>,
        next: PreNorm<'_, B>,
        mask: Tensor<B, 3, Bool>,
        masks: LayerMasks,
        rounded: &RoundedWeights<B>,
        continues: bool,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (_, ln_2) = self.pre_norms();
        let attention = self.attn.training_branch(normed, mask, masks, rounded);
        let (x, normed) = B::residual_layer_norm(x, attention, ln_2, true);
        B::residual_layer_norm(x, self.mlp.training_branch(normed, masks, rounded), next, continues)
    }

    /// `ln_1` and `ln_2`, each with its ε.
    pub fn pre_norms(&self) -> (PreNorm<'_, B>, PreNorm<'_, B>) {
        let epsilon = self.layer_norm_epsilon;
        (
            PreNorm { layer: &self.ln_1, epsilon, output: self.attn.precision.operands() },
            PreNorm { layer: &self.ln_2, epsilon, output: self.mlp.precision.operands() },
        )
    }
}

pub(crate) struct BlockConfig {
    pub config: Gpt2Config,
    pub weights: Initializer,
    /// For the projections that write into the residual stream.
    pub residual: Initializer,
}

impl BlockConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Block<B> {
        let c = &self.config;
        let norm = || LayerNormConfig::new(c.n_embd).with_epsilon(c.layer_norm_epsilon).init(device);
        let linear = |d_in, d_out, init: &Initializer| {
            zero_bias(LinearConfig::new(d_in, d_out).with_initializer(init.clone()).init(device))
        };
        Block {
            ln_1: norm(),
            attn: CausalSelfAttention::new(
                linear(c.n_embd, 3 * c.n_embd, &self.weights),
                linear(c.n_embd, c.n_embd, &self.residual),
                c,
            ),
            ln_2: norm(),
            mlp: Mlp::new(
                linear(c.n_embd, 4 * c.n_embd, &self.weights),
                linear(4 * c.n_embd, c.n_embd, &self.residual),
                c,
            ),
            layer_norm_epsilon: c.layer_norm_epsilon,
        }
    }
}

/// GPT-2 starts every bias at zero; burn's initialisers would draw them like the weights.
fn zero_bias<B: Backend>(mut linear: Linear<B>) -> Linear<B> {
    if let Some(bias) = &linear.bias {
        let [d] = bias.dims();
        linear.bias = Some(Param::from_tensor(Tensor::zeros([d], &bias.device())));
    }
    linear
}
