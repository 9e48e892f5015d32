//! Validation loss and perplexity, during training and as `train eval`.

use crate::{
    batches::{Batching, MicroBatch},
    cli::EvalArgs,
    compatibility,
};
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use gpt2::{Gpt2, Gpt2Backend};
use serde::Serialize;
use shards::{Dataset, SplitRows};
use stage::{
    device::{self, OnBackend},
    gpu_memory::MemoryNeed,
};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Evaluation {
    /// Token-mean next-token loss.
    pub loss: f64,
    pub perplexity: f64,
    /// Tokens the loss counted.
    pub tokens: u64,
}

/// Evaluate `model` on every row of `split`, batched as `batching` says; None when the split
/// has no token to predict. Without dropout (`MicroBatch::loss`).
pub fn evaluate<B: Gpt2Backend>(
    model: &Gpt2<B>,
    split: &SplitRows,
    batching: &Batching,
    device: &B::Device,
) -> Option<Evaluation> {
    let rows: Vec<usize> = (0..split.len()).collect();
    let (mut nll, mut tokens) = (0.0, 0u64);
    for chunk in rows.chunks(batching.rows) {
        let batch = MicroBatch::<B>::new(split, chunk, batching, device);
        if batch.targets == 0 {
            continue;
        }
        let targets = batch.targets;
        let mean = batch.loss(model).into_scalar().elem::<f64>();
        nll += mean * targets as f64;
        tokens += targets as u64;
    }
    if tokens == 0 {
        return None;
    }
    let loss = nll / tokens as f64;
    Some(Evaluation { loss, perplexity: loss.exp(), tokens })
}

/// `train eval`: load a model and a split, print and return the evaluation.
pub fn run(args: &EvalArgs) -> Result<Evaluation> {
    let dataset = Dataset::open(&args.data)?;
    let split = dataset.read_split(&args.split)?;
    if split.is_empty() {
        bail!("{}: the {} split has no rows", args.data.display(), args.split);
    }
    let model_dir = stage::model::locate(&args.model)?;
    // Every batch is padded up to its rows: no more than the split has.
    let rows = (args.micro_batch as usize).min(split.len());
    let need = MemoryNeed::evaluation(&gpt2::hf::read_config(&model_dir)?, rows, dataset.manifest.seq_len as usize);
    let device = device::resolve(args.device, "train", &need)?;
    let evaluation = device::dispatch(device, Evaluate { args, model_dir, dataset: &dataset, split: &split, rows })?;
    println!(
        "{} on {} ({} split, {} tokens): loss {:.4}, perplexity {:.2}",
        args.model,
        args.data.display(),
        args.split,
        evaluation.tokens,
        evaluation.loss,
        evaluation.perplexity
    );
    Ok(evaluation)
}

struct Evaluate<'a> {
    args: &'a EvalArgs,
    /// Where the model `args.model` names lies.
    model_dir: PathBuf,
    dataset: &'a Dataset,
    split: &'a SplitRows,
    /// Rows a batch.
    rows: usize,
}

impl OnBackend for Evaluate<'_> {
    type Output = Result<Evaluation>;

    fn run<B: Gpt2Backend>(self, device: B::Device) -> Self::Output {
        let (config, model) = gpt2::hf::load_dir::<B>(&self.model_dir, &device)?;
        compatibility::check(self.dataset, &config, &self.args.model, Some(&self.model_dir))?;
        let batching =
            Batching { rows: self.rows, pad_id: self.dataset.manifest.tokenizer.eos_id, doc_mask: self.args.doc_mask };
        evaluate(&model, self.split, &batching, &device)
            .context("the split has no token to predict (every row is a single token)")
    }
}
