use crate::Gpt2Backend;
use burn::prelude::*;

/// Mean next-token cross-entropy: position `t` predicts token `t + 1`, counted only where
/// `mask` (`[batch, time]`, 1.0 for real tokens, 0.0 for padding) marks token `t + 1` as real.
/// This is `transformers`' loss with `labels = tokens` and -100 where the mask is 0.
pub fn next_token_loss<B: Gpt2Backend>(
    logits: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [batch, time, vocab] = logits.dims();
    // Every position keeps its logits (slicing off the last would copy them all, and their
    // gradient): the last predicts nothing, at weight 0, and takes the row's first token as a
    // stand-in target.
    let next =
        |t: Tensor<B, 2, Int>| Tensor::cat(vec![t.clone().slice([0..batch, 1..time]), t.slice([0..batch, 0..1])], 1);
    let weights =
        Tensor::cat(vec![mask.clone().slice([0..batch, 1..time]), Tensor::zeros([batch, 1], &mask.device())], 1);
    let rows = batch * time;
    B::cross_entropy(logits.reshape([rows, vocab]), next(tokens).reshape([rows]), weights.reshape([rows]))
}
