use crate::{Gpt2Backend, Precision};
use burn::{prelude::*, tensor::TensorData};

/// What each position's logits are scored against in [`next_token_loss`], `[batch × time]`: the
/// next token of its row, and its weight, 1.0 where that token is real and 0.0 where it is
/// padding. A row's last position predicts nothing: weight 0, and the row's first token as a
/// stand-in target (every position keeps its logits: slicing off the last would copy them all,
/// and their gradient). Made on the host, where the rows are: shifting them on a GPU takes
/// eight kernels a micro-batch.
#[derive(Debug, Clone)]
pub struct NextTokens<B: Backend> {
    pub targets: Tensor<B, 1, Int>,
    pub weights: Tensor<B, 1>,
}

impl<B: Backend> NextTokens<B> {
    /// For rows of `time` `tokens` each, with `real` (1.0 for real tokens, 0.0 for padding) of
    /// the same layout, both in row-major order.
    pub fn new(tokens: &[i64], real: &[f32], time: usize, device: &B::Device) -> Self {
        assert_eq!(tokens.len(), real.len(), "a weight for each token");
        assert!(time > 0 && tokens.len().is_multiple_of(time), "rows of {time} tokens");
        let targets: Vec<i64> = tokens.chunks(time).flat_map(|row| row[1..].iter().chain(&row[..1])).copied().collect();
        let weights: Vec<f32> = real.chunks(time).flat_map(|row| row[1..].iter().copied().chain([0.0])).collect();
        let rows = [tokens.len()];
        Self {
            targets: Tensor::from_data(TensorData::new(targets, rows), device),
            weights: Tensor::from_data(TensorData::new(weights, rows), device),
        }
    }
}

/// Mean next-token cross-entropy of `logits` `[batch, time, vocab]`: position `t` predicts token
/// `t + 1`, counted only where that token is real. This is `transformers`' loss with `labels =
/// tokens` and -100 on padding. `precision`: the model's, whose LM head's backward pass reads
/// the logits' gradient in its operands' type, which the loss's writes it in.
pub fn next_token_loss<B: Gpt2Backend>(
    logits: Tensor<B, 3>,
    next: NextTokens<B>,
    precision: Precision,
) -> Tensor<B, 1> {
    let vocab = logits.dims()[2];
    next_token_loss_over(logits, vocab, next, precision)
}

/// [`next_token_loss`] of `logits` `[batch, time, columns]` whose first `vocab` columns are the
/// vocabulary and the rest the LM head's padding (`Gpt2Backend::lm_head_columns`).
pub(crate) fn next_token_loss_over<B: Gpt2Backend>(
    logits: Tensor<B, 3>,
    vocab: usize,
    next: NextTokens<B>,
    precision: Precision,
) -> Tensor<B, 1> {
    let [batch, time, columns] = logits.dims();
    let logits = logits.reshape([batch * time, columns]);
    B::cross_entropy(logits, next.targets, next.weights, precision.operands(), vocab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn targets_are_each_rows_next_tokens() {
        let next = NextTokens::<Cpu>::new(&[5, 6, 7, 8, 9, 4], &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], 3, &Default::default());
        assert_eq!(next.targets.into_data().to_vec::<i64>().unwrap(), [6, 7, 5, 9, 4, 8]);
        assert_eq!(next.weights.into_data().to_vec::<f32>().unwrap(), [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    }
}
