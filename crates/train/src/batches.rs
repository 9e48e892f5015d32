//! Which rows each optimizer step trains on, and the tensors of a micro-batch.
//!
//! The data position is a function of the step number alone (epoch = step / steps per epoch),
//! so a resumed run needs only the step to pick up exactly where it stopped.

use burn::{prelude::*, tensor::TensorData};
use rand_chacha::{
    rand_core::{RngCore, SeedableRng},
    ChaCha8Rng,
};
use shards::SplitRows;

#[derive(Debug, Clone, Copy)]
pub struct StepPlan {
    pub rows: usize,
    pub micro_batch: usize,
    pub grad_accum: usize,
    pub shuffle: bool,
    pub seed: u64,
}

impl StepPlan {
    pub fn rows_per_step(&self) -> usize {
        self.micro_batch * self.grad_accum
    }

    /// Steps that cover every row once; the last one may hold fewer rows.
    pub fn steps_per_epoch(&self) -> u64 {
        self.rows.div_ceil(self.rows_per_step()) as u64
    }

    /// The rows of `epoch` in training order: file order, or a permutation drawn from stream
    /// `epoch` of `seed`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.rows).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch);
            for i in (1..order.len()).rev() {
                // Multiply-shift maps 64 random bits onto 0..=i; its bias (i / 2^64) is nil here.
                let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// The micro-batches (row indices) of `step`, given its epoch's order.
    pub fn micro_batches<'a>(&self, step: u64, epoch_order: &'a [usize]) -> impl Iterator<Item = &'a [usize]> + 'a {
        let first = (step % self.steps_per_epoch()) as usize * self.rows_per_step();
        let last = (first + self.rows_per_step()).min(epoch_order.len());
        epoch_order[first..last].chunks(self.micro_batch)
    }
}

/// Rows as model input: token ids padded to the longest row, and a mask of real tokens.
pub struct MicroBatch<B: Backend> {
    pub tokens: Tensor<B, 2, Int>,
    /// 1.0 for real tokens, 0.0 for padding.
    pub mask: Tensor<B, 2>,
    /// Tokens the loss counts: every real token after each row's first.
    pub targets: usize,
    /// Real tokens (what tokens/s counts).
    pub real_tokens: usize,
}

impl<B: Backend> MicroBatch<B> {
    pub fn new(split: &SplitRows, rows: &[usize], pad_id: u32, device: &B::Device) -> Self {
        let lengths: Vec<usize> = rows.iter().map(|&r| split.lengths[r] as usize).collect();
        let width = lengths.iter().copied().max().unwrap_or(1).max(1);
        let mut tokens = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for (&row, &length) in rows.iter().zip(&lengths) {
            let real = split.row_tokens(row);
            tokens.extend(real.iter().map(|&t| t as i64));
            tokens.extend(std::iter::repeat_n(pad_id as i64, width - length));
            mask.extend((0..width).map(|i| if i < length { 1.0f32 } else { 0.0 }));
        }
        let shape = [rows.len(), width];
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens, shape), device),
            mask: Tensor::from_data(TensorData::new(mask, shape), device),
            targets: lengths.iter().map(|l| l.saturating_sub(1)).sum(),
            real_tokens: lengths.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_covers_every_row_once_in_its_own_order() {
        let plan = StepPlan { rows: 10, micro_batch: 2, grad_accum: 2, shuffle: true, seed: 3 };
        assert_eq!(plan.steps_per_epoch(), 3);
        let (first, second) = (plan.epoch_order(0), plan.epoch_order(1));
        assert_ne!(first, second);
        assert_eq!(first, plan.epoch_order(0), "an epoch's order depends only on seed and epoch");
        for order in [&first, &second] {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        let steps: Vec<Vec<&[usize]>> = (3..6).map(|s| plan.micro_batches(s, &second).collect()).collect();
        assert_eq!(steps[0], [&second[0..2], &second[2..4]]);
        assert_eq!(steps[2], [&second[8..10]], "the epoch's last step holds the remainder");
    }

    #[test]
    fn no_shuffle_keeps_file_order() {
        let plan = StepPlan { rows: 5, micro_batch: 1, grad_accum: 2, shuffle: false, seed: 3 };
        assert_eq!(plan.epoch_order(7), [0, 1, 2, 3, 4]);
    }
}
