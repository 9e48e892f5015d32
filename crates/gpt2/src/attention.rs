use crate::{Gpt2Config, KvCache};
use burn::{
    nn::{Dropout, DropoutConfig, Linear},
    prelude::*,
    tensor::activation::softmax,
};

/// Causal multi-head self-attention with GPT-2's fused q/k/v projection.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// q, k and v for all heads at once: `[n_embd, 3 × n_embd]`.
    pub c_attn: Linear<B>,
    pub c_proj: Linear<B>,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
    n_head: usize,
}

impl<B: Backend> CausalSelfAttention<B> {
    pub fn new(c_attn: Linear<B>, c_proj: Linear<B>, config: &Gpt2Config) -> Self {
        Self {
            c_attn,
            c_proj,
            attn_dropout: DropoutConfig::new(config.attn_pdrop).init(),
            resid_dropout: DropoutConfig::new(config.resid_pdrop).init(),
            n_head: config.n_head,
        }
    }

    pub(crate) fn set_dropout(&mut self, p: f64) {
        self.attn_dropout = DropoutConfig::new(p).init();
        self.resid_dropout = DropoutConfig::new(p).init();
    }

    /// `x`: `[batch, time, n_embd]`. With a cache (and this block's layer index), the keys and
    /// values of earlier positions come from it and this call's are appended to it.
    pub fn forward(&self, x: Tensor<B, 3>, cache: Option<(&mut KvCache<B>, usize)>) -> Tensor<B, 3> {
        let [batch, time, n_embd] = x.dims();
        let head_dim = n_embd / self.n_head;
        let heads = |t: Tensor<B, 3>| t.reshape([batch, time, self.n_head, head_dim]).swap_dims(1, 2);
        let mut qkv = self.c_attn.forward(x).chunk(3, 2);
        let (v, k, q) = (heads(qkv.pop().unwrap()), heads(qkv.pop().unwrap()), heads(qkv.pop().unwrap()));
        let (k, v) = match cache {
            Some((cache, layer)) => cache.extend(layer, k, v),
            None => (k, v),
        };
        let keys = k.dims()[2];

        let scores = q.matmul(k.transpose()) / (head_dim as f64).sqrt();
        let mask = causal_mask::<B>(time, keys, &scores.device()).unsqueeze::<4>().expand([batch, self.n_head, time, keys]);
        let attention = self.attn_dropout.forward(softmax(scores.mask_fill(mask, f32::NEG_INFINITY), 3));
        let y = attention.matmul(v).swap_dims(1, 2).reshape([batch, time, n_embd]);
        self.resid_dropout.forward(self.c_proj.forward(y))
    }
}

/// `true` where query `i` (the last `queries` of `keys` positions) must not see key `j`: `j`
/// is later than the query's own position.
fn causal_mask<B: Backend>(queries: usize, keys: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
    let offset = (keys - queries) as i64;
    let query_positions = Tensor::<B, 1, Int>::arange(offset..offset + queries as i64, device)
        .reshape([queries, 1])
        .expand([queries, keys]);
    let key_positions = Tensor::<B, 1, Int>::arange(0..keys as i64, device).reshape([1, keys]).expand([queries, keys]);
    key_positions.greater(query_positions)
}
