use crate::{Gpt2Backend, Gpt2Config, PreNorm, Precision};
use burn::{
    nn::{Dropout, DropoutConfig, Linear},
    prelude::*,
};

/// The feed-forward branch: expand 4×, GPT-2's tanh-approximated GELU, project back, dropout.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    dropout: Dropout,
    #[module(skip)]
    pub(crate) precision: Precision,
}

impl<B: Backend> Mlp<B> {
    pub fn new(c_fc: Linear<B>, c_proj: Linear<B>, config: &Gpt2Config) -> Self {
        Self { c_fc, c_proj, dropout: DropoutConfig::new(config.resid_pdrop).init(), precision: Precision::F32 }
    }

    pub(crate) fn set_dropout(&mut self, p: f64) {
        self.dropout = DropoutConfig::new(p).init();
    }
}

impl<B: Gpt2Backend> Mlp<B> {
    /// `x + mlp(norm(x))` for `x`, the `[batch × time, n_embd]` rows of the residual stream.
    pub fn forward(&self, x: Tensor<B, 2>, norm: PreNorm<'_, B>) -> Tensor<B, 2> {
        let hidden = B::normed_linear(norm, &self.c_fc, x.clone(), true, self.precision);
        B::linear_residual(&self.c_proj, hidden, &self.dropout, x, self.precision)
    }
}
