use burn::{prelude::*, tensor::activation::log_softmax};

/// Mean next-token cross-entropy: position `t` predicts token `t + 1`, counted only where
/// `mask` (`[batch, time]`, 1.0 for real tokens, 0.0 for padding) marks token `t + 1` as real.
/// This is `transformers`' loss with `labels = tokens` and -100 where the mask is 0.
pub fn next_token_loss<B: Backend>(
    logits: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [batch, time, vocab] = logits.dims();
    let predictions = logits.slice([0..batch, 0..time - 1, 0..vocab]);
    let targets = tokens.slice([0..batch, 1..time]).unsqueeze_dim::<3>(2);
    let weights = mask.slice([0..batch, 1..time]);
    let log_probs = log_softmax(predictions, 2).gather(2, targets).squeeze_dim::<2>(2);
    -(log_probs * weights.clone()).sum() / weights.sum()
}
