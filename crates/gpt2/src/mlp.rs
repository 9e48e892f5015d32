use crate::Gpt2Config;
use burn::{
    nn::{Dropout, DropoutConfig, Linear},
    prelude::*,
    tensor::activation::gelu_approximate,
};

/// The feed-forward branch: expand 4×, GPT-2's tanh-approximated GELU, project back, dropout.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> Mlp<B> {
    pub fn new(c_fc: Linear<B>, c_proj: Linear<B>, config: &Gpt2Config) -> Self {
        Self { c_fc, c_proj, dropout: DropoutConfig::new(config.resid_pdrop).init() }
    }

    pub(crate) fn set_dropout(&mut self, p: f64) {
        self.dropout = DropoutConfig::new(p).init();
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.dropout.forward(self.c_proj.forward(gelu_approximate(self.c_fc.forward(x))))
    }
}
