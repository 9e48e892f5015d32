//! Which rows each optimizer step trains on, and the tensors of a micro-batch.
//!
//! The data position is a function of the step number alone (epoch = step / steps per epoch),
//! so a resumed run needs only the step to pick up exactly where it stopped.

use burn::{prelude::*, tensor::TensorData};
use gpt2::{Documents, DropoutMasks, Gpt2, Gpt2Backend, NextTokens, RoundedWeights};
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

/// The row order of the epoch being trained, drawn once per epoch.
#[derive(Debug, Default)]
pub struct EpochOrder {
    epoch: Option<u64>,
    rows: Vec<usize>,
}

impl EpochOrder {
    /// The rows of `epoch` in training order (see [`StepPlan::epoch_order`]).
    pub fn of(&mut self, epoch: u64, plan: &StepPlan) -> &[usize] {
        if self.epoch != Some(epoch) {
            (self.epoch, self.rows) = (Some(epoch), plan.epoch_order(epoch));
        }
        &self.rows
    }
}

/// How rows become micro-batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Rows per micro-batch (the last one is padded up to it).
    pub rows: usize,
    /// The token that pads rows and empty slots (the dataset's end-of-text token).
    pub pad_id: u32,
    /// Keep attention within each document of a packed row, positions counted from its start.
    pub doc_mask: bool,
}

/// What a micro-batch's rows hold, counted on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Tokens the loss counts: every real token after each row's first.
    pub targets: usize,
    /// Real tokens (what tokens/s counts).
    pub real_tokens: usize,
}

impl TokenCounts {
    pub fn of(split: &SplitRows, rows: &[usize]) -> Self {
        rows.iter().map(|&row| split.row_tokens(row).len()).fold(Self::default(), |counts, real| Self {
            targets: counts.targets + real.saturating_sub(1),
            real_tokens: counts.real_tokens + real,
        })
    }
}

impl std::ops::Add for TokenCounts {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { targets: self.targets + other.targets, real_tokens: self.real_tokens + other.real_tokens }
    }
}

/// Rows as model input: token ids and a mask of real tokens, always `[batch, seq_len]`. Every
/// micro-batch has the same shape, padding included, because a GPU backend compiles and tunes
/// its kernels for each new shape; padding costs little, as packed rows are nearly full.
pub struct MicroBatch<B: Backend> {
    pub tokens: Tensor<B, 2, Int>,
    /// Where each row's documents begin, with --doc-mask.
    pub documents: Option<Documents<B>>,
    /// What the loss scores each position against: the next token, and whether it is real.
    pub next: NextTokens<B>,
    /// Tokens the loss counts: every real token after each row's first.
    pub targets: usize,
}

impl<B: Gpt2Backend> MicroBatch<B> {
    /// `rows` (at most `batching.rows`) of `split`, padded to `batching.rows` rows of `split.seq_len`.
    pub fn new(split: &SplitRows, rows: &[usize], batching: &Batching, device: &B::Device) -> Self {
        let batch = batching.rows;
        assert!(rows.len() <= batch, "{} rows do not fit a micro-batch of {batch}", rows.len());
        let width = split.seq_len as usize;
        let mut tokens = vec![batching.pad_id as i64; batch * width];
        let mut mask = vec![0.0f32; batch * width];
        for (slot, &row) in rows.iter().enumerate() {
            let start = slot * width;
            for (i, &token) in split.row_tokens(row).iter().enumerate() {
                tokens[start + i] = token as i64;
                mask[start + i] = 1.0;
            }
        }
        let shape = [batch, width];
        let documents = batching.doc_mask.then(|| {
            let mut starts: Vec<Vec<usize>> =
                rows.iter().map(|&row| split.row_segments(row).iter().map(|s| s.start as usize).collect()).collect();
            starts.resize(batch, vec![0]);
            Documents::new(&starts, width, device)
        });
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens.clone(), shape), device),
            documents,
            next: NextTokens::new(&tokens, &mask, width, device),
            targets: TokenCounts::of(split, rows).targets,
        }
    }

    /// The model's next-token loss on these rows, without dropout (evaluation).
    pub fn loss(self, model: &Gpt2<B>) -> Tensor<B, 1> {
        model.loss(self.tokens, self.documents.as_ref(), self.next)
    }

    /// The model's next-token loss on these rows in training, with dropout's `masks` and the
    /// step's `rounded` weights.
    pub fn training_loss(self, model: &Gpt2<B>, masks: DropoutMasks, rounded: &RoundedWeights<B>) -> Tensor<B, 1> {
        model.training_loss(self.tokens, self.documents.as_ref(), masks, rounded, self.next)
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
