use crate::{
    backend::bias_or_zeros,
    dropout::{Dropout, LayerMasks},
    Gpt2Backend, Gpt2Config, PreNorm, Precision, ResidualBranch, RoundedWeights,
};
use burn::{nn::Linear, prelude::*};

/// The feed-forward branch: expand 4×, GPT-2's tanh-approximated GELU, project back, dropout.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    /// Dropout's probability on the output.
    resid_pdrop: f64,
    #[module(skip)]
    pub(crate) precision: Precision,
}

impl<B: Backend> Mlp<B> {
    pub fn new(c_fc: Linear<B>, c_proj: Linear<B>, config: &Gpt2Config) -> Self {
        Self { c_fc, c_proj, resid_pdrop: config.resid_pdrop, precision: Precision::F32 }
    }

    pub(crate) fn set_dropout(&mut self, p: f64) {
        self.resid_pdrop = p;
    }
}

impl<B: Gpt2Backend> Mlp<B> {
    /// `x + mlp(norm(x))` for `x`, the `[batch × time, n_embd]` rows of the residual stream.
    pub fn forward(&self, x: Tensor<B, 2>, norm: PreNorm<'_, B>) -> Tensor<B, 2> {
        let hidden = B::normed_linear(norm, &self.c_fc, x.clone(), true, self.precision);
        B::linear_residual(&self.c_proj, hidden, x, self.precision)
    }

    /// The branch as training runs it, from `ln_2`'s output `normed`: its end before the
    /// residual add, with the layer's dropout `masks` and the step's `rounded` weights.
    pub fn training_branch(
        &self,
        normed: Tensor<B, 2>,
        masks: LayerMasks,
        rounded: &RoundedWeights<B>,
    ) -> ResidualBranch<B> {
        let weight = &self.c_fc.weight;
        let product = self.precision.product(normed, weight.val(), rounded.get(weight));
        let hidden = B::bias_gelu(product, bias_or_zeros(&self.c_fc), self.precision.operands());
        let dropout = Dropout::at(self.resid_pdrop, Some(masks.mlp_output()));
        ResidualBranch::end(&self.c_proj, hidden, dropout, self.precision, rounded.get(&self.c_proj.weight))
    }
}
