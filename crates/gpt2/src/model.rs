use crate::{block::Block, KvCache};
use burn::{
    nn::{Dropout, DropoutConfig, Embedding, LayerNorm},
    prelude::*,
};

/// GPT-2: token and position embeddings, a stack of pre-LayerNorm blocks, a final LayerNorm,
/// and an LM head that reuses the token embedding (tied weights). Field names follow the
/// Hugging Face checkpoint names.
#[derive(Module, Debug)]
pub struct Gpt2<B: Backend> {
    pub wte: Embedding<B>,
    pub wpe: Embedding<B>,
    pub(crate) drop: Dropout,
    pub h: Vec<Block<B>>,
    pub ln_f: LayerNorm<B>,
}

impl<B: Backend> Gpt2<B> {
    /// Logits `[batch, time, vocab]` for tokens `[batch, time]` at positions `0..time`.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.run(tokens, 0, None)
    }

    /// Logits for `tokens` following the positions already in `cache`, which is extended.
    pub fn forward_cached(&self, tokens: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        let start = cache.len();
        self.run(tokens, start, Some(cache))
    }

    fn run(&self, tokens: Tensor<B, 2, Int>, start: usize, mut cache: Option<&mut KvCache<B>>) -> Tensor<B, 3> {
        let [batch, time] = tokens.dims();
        let n_positions = self.wpe.weight.dims()[0];
        assert!(
            start + time <= n_positions,
            "sequence of {} tokens is longer than the model's {n_positions} positions",
            start + time
        );
        let device = tokens.device();
        let positions = Tensor::<B, 1, Int>::arange(start as i64..(start + time) as i64, &device)
            .reshape([1, time])
            .expand([batch, time]);
        let mut x = self.drop.forward(self.wte.forward(tokens) + self.wpe.forward(positions));
        for (layer, block) in self.h.iter().enumerate() {
            x = block.forward(x, cache.as_deref_mut().map(|c| (c, layer)));
        }
        let x = self.ln_f.forward(x);
        // The LM head is the token embedding, transposed. A plain 2-D product: burn 0.21's CUDA
        // matmul gives wrong results for a transposed right-hand side broadcast over a batch.
        let [batch, time, n_embd] = x.dims();
        let vocab = self.wte.weight.dims()[0];
        x.reshape([batch * time, n_embd]).matmul(self.wte.weight.val().transpose()).reshape([batch, time, vocab])
    }

    /// The same model with every dropout (embedding, attention, residual) at probability `p`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.drop = DropoutConfig::new(p).init();
        for block in &mut self.h {
            block.attn.set_dropout(p);
            block.mlp.set_dropout(p);
        }
        self
    }

    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.h.len())
    }
}
