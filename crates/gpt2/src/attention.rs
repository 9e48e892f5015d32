use crate::{
    dropout::{Dropout, LayerMasks},
    Gpt2Backend, Gpt2Config, LayerCache, PreNorm, Precision, ResidualBranch, RoundedWeights,
};
use burn::{nn::Linear, prelude::*};

/// Causal multi-head self-attention with GPT-2's fused q/k/v projection.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// q, k and v for all heads at once: `[n_embd, 3 × n_embd]`.
    pub c_attn: Linear<B>,
    pub c_proj: Linear<B>,
    /// Dropout's probability on the attention weights, and on the output.
    attn_pdrop: f64,
    resid_pdrop: f64,
    n_head: usize,
    #[module(skip)]
    pub(crate) precision: Precision,
}

impl<B: Backend> CausalSelfAttention<B> {
    pub fn new(c_attn: Linear<B>, c_proj: Linear<B>, config: &Gpt2Config) -> Self {
        Self {
            c_attn,
            c_proj,
            attn_pdrop: config.attn_pdrop,
            resid_pdrop: config.resid_pdrop,
            n_head: config.n_head,
            precision: Precision::F32,
        }
    }

    pub(crate) fn set_dropout(&mut self, p: f64) {
        (self.attn_pdrop, self.resid_pdrop) = (p, p);
    }
}

impl<B: Gpt2Backend> CausalSelfAttention<B> {
    /// `x + attention(norm(x))` for `x`, the `[batch × time, n_embd]` rows of the residual
    /// stream; `mask`: `[batch, time, keys]`, `true` where a query must not see a key. With
    /// this layer's cache, the keys and values of earlier positions come from it and this
    /// call's are appended to it.
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        norm: PreNorm<'_, B>,
        mask: Tensor<B, 3, Bool>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 2> {
        let [rows, n_embd] = x.dims();
        let qkv = B::normed_linear(norm, &self.c_attn, x.clone(), false, self.precision);
        let y = match cache {
            None => B::self_attention(qkv, self.n_head, mask, None, self.precision),
            // One new position a row (decoding) comes after every cached key: the causal mask
            // hides none of them.
            Some(cache) if mask.dims()[1] == 1 => cache.attend_new_position(qkv, self.n_head, self.precision),
            // A prompt's first pass: its own keys are all there are, so attention is the
            // uncached kind (on GPUs one flash kernel, where burn's operations took 12), and
            // the cache keeps its keys and values for the steps after.
            Some(cache) if cache.is_empty() => {
                let (_, k, v) = split_heads(qkv.clone(), self.n_head, mask.dims());
                cache.append(k, v);
                B::self_attention(qkv, self.n_head, mask, None, self.precision)
            }
            Some(cache) => {
                let (q, k, v) = split_heads(qkv, self.n_head, mask.dims());
                let (k, v) = cache.extend(k, v);
                B::masked_attention(q, k, v, mask, None, self.precision).reshape([rows, n_embd])
            }
        };
        B::linear_residual(&self.c_proj, y, x, self.precision)
    }
}

impl<B: Gpt2Backend> CausalSelfAttention<B> {
    /// The branch as training runs it, from `ln_1`'s output `normed`: its end before the
    /// residual add, with the layer's dropout `masks` and the step's `rounded` weights.
    pub fn training_branch(
        &self,
        normed: Tensor<B, 2>,
        mask: Tensor<B, 3, Bool>,
        masks: LayerMasks,
        rounded: &RoundedWeights<B>,
    ) -> ResidualBranch<B> {
        let qkv = self.precision.linear(&self.c_attn, normed, rounded.get(&self.c_attn.weight));
        let weights_dropout = Dropout::at(self.attn_pdrop, Some(masks.attention_weights()));
        let y = B::self_attention(qkv, self.n_head, mask, weights_dropout, self.precision);
        let output_dropout = Dropout::at(self.resid_pdrop, Some(masks.attention_output()));
        ResidualBranch::end(&self.c_proj, y, output_dropout, self.precision, rounded.get(&self.c_proj.weight))
    }
}

/// q, k and v, each `[batch, heads, time, head_dim]`, from the q/k/v projection's rows
/// `[batch × time, 3 × d]`; `batch` and `time` are the first two of the mask's `dims`.
pub(crate) fn split_heads<B: Backend>(
    qkv: Tensor<B, 2>,
    heads: usize,
    [batch, time, _]: [usize; 3],
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let head_dim = qkv.dims()[1] / (3 * heads);
    let by_heads = |t: Tensor<B, 2>| t.reshape([batch, time, heads, head_dim]).swap_dims(1, 2);
    let mut qkv = qkv.chunk(3, 1);
    let (v, k, q) = (by_heads(qkv.pop().unwrap()), by_heads(qkv.pop().unwrap()), by_heads(qkv.pop().unwrap()));
    (q, k, v)
}
