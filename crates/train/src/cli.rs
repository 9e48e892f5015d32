use crate::schedule::ScheduleKind;
use clap::{Args, Parser, Subcommand};
use gpt2::Precision;
use serde::{Deserialize, Serialize};
use stage::device::{self, DeviceChoice};
use std::path::{Path, PathBuf};

/// Fine-tune GPT-2 on a prepared dataset, with gradient accumulation.
///
/// Each optimizer step trains on --micro-batch × --grad-accum packed rows (one forward pass per
/// micro-batch); the step's loss is the token mean over all of them, so accumulation changes
/// memory, not the update. AdamW (PyTorch's meaning; decay on weight matrices only), global-norm
/// clipping, warmup then linear/cosine decay. Writes RUN/metrics.jsonl (one line per step, as it
/// ends), RUN/loss.png, RUN/run.json, checkpoints in RUN/checkpoints/ (--resume continues
/// exactly), and the model in Hugging Face layout in RUN/final/ (`train export` writes a
/// checkpoint of an unfinished run as one).
///
/// Example: train --data data/prepared/reddit-jokes --init openai-community/gpt2-medium --out data/runs/reddit-jokes --micro-batch 1 --grad-accum 16 --lr 3e-5
#[derive(Debug, Parser)]
#[command(
    name = "train",
    version,
    args_override_self = true,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Read flags from the [train] table of this pipeline TOML file (keys are the flag names;
    /// flags given on the command line win).
    #[arg(long, value_name = "FILE", global = true)]
    pub pipeline: Option<PathBuf>,

    #[command(flatten)]
    pub args: TrainArgs,
}

/// The flags a training run cannot go without. They are `Option`s in [`TrainArgs`] only so that
/// `train eval` can leave them out; clap requires them otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RunPaths<'a> {
    pub data: &'a Path,
    pub init: &'a str,
    pub out: &'a Path,
}

impl TrainArgs {
    pub fn paths(&self) -> anyhow::Result<RunPaths<'_>> {
        match (self.data.as_deref(), self.init.as_deref(), self.out.as_deref()) {
            (Some(data), Some(init), Some(out)) => Ok(RunPaths { data, init, out }),
            _ => anyhow::bail!("a training run needs --data, --init and --out"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validation loss and perplexity of any model on a prepared dataset (e.g. the pretrained
    /// model before fine-tuning).
    Eval(EvalArgs),
    /// Write a checkpoint of a run, finished or not, as a model in Hugging Face's layout in
    /// RUN/exports/step-N/, for sample, train eval or transformers before the run ends (a run
    /// writes RUN/final/ only when it finishes).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args, Serialize, Deserialize, PartialEq)]
pub struct TrainArgs {
    /// A prepared dataset directory (the prepare stage's --out).
    #[arg(long, value_name = "DIR", required = true)]
    pub data: Option<PathBuf>,

    /// Starting weights: a Hugging Face model directory or Hub id (openai-community/gpt2-medium),
    /// or random weights: random:PRESET (gpt2, gpt2-medium, gpt2-large, gpt2-xl) or
    /// random:CONFIG.json.
    #[arg(long, value_name = "MODEL", required = true)]
    pub init: Option<String>,

    /// The run directory to write: new, empty, or an earlier run of train (anything else is
    /// refused, never overwritten).
    #[arg(long, value_name = "DIR", required = true)]
    pub out: Option<PathBuf>,

    /// Continue the unfinished run in --out from its latest checkpoint (a new run starts when
    /// there is none). The run's inputs must be the same: every flag except --device(s),
    /// --eval-every, --save-every and --keep-checkpoints, the dataset and the initial weights.
    /// A finished run with the same inputs is left as it is, with or without this flag.
    #[arg(long)]
    pub resume: bool,

    /// When --out holds a run with other inputs, move it aside (to OUT.replaced-DATE, beside
    /// --out) and start over.
    #[arg(long)]
    pub replace: bool,

    /// With --replace, delete the old run instead of moving it aside.
    #[arg(long, requires = "replace")]
    #[serde(default)]
    pub delete_replaced: bool,

    #[arg(long, value_name = "DEVICE", default_value_t, help = device::HELP)]
    #[serde(skip)]
    pub device: DeviceChoice,

    /// Train on several devices at once, one worker each: cuda:0,cuda:1 (or cpu,cpu: workers that
    /// share the CPU). Each takes every N-th micro-batch of a step (--grad-accum must be at least
    /// N) and the gradients are summed across them, so a step computes what it does on one
    /// device, dropout's masks included. A run resumes on any number of devices. Several CUDA
    /// devices need NCCL (libnccl.so).
    #[arg(long, value_name = "LIST", value_delimiter = ',', num_args = 1.., conflicts_with = "device")]
    #[serde(skip)]
    pub devices: Vec<DeviceChoice>,

    /// f32, or bf16 (CUDA only): mixed precision as PyTorch's bf16 autocast does it. The
    /// operands of the projections' and the LM head's products are rounded to bf16 (tensor
    /// cores accumulate in f32); weights, gradients, AdamW state, LayerNorm, attention (its flash
    /// kernels), softmax and the loss stay f32.
    #[arg(long, value_name = "f32|bf16", default_value_t = Precision::F32)]
    #[serde(default)]
    pub precision: Precision,

    /// Rows per forward pass. Lower it when memory runs out.
    #[arg(long, value_name = "B", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub micro_batch: u32,

    /// Micro-batches per optimizer step: a step sees micro-batch × grad-accum rows.
    #[arg(long, value_name = "A", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub grad_accum: u32,

    /// Passes over the training rows (ignored when --max-steps is given).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,

    /// Stop after this many optimizer steps (the schedule then spans them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,

    /// Peak learning rate.
    #[arg(long, value_name = "X", default_value_t = 3e-5, value_parser = positive)]
    pub lr: f64,

    /// Steps of linear warmup from 0 to --lr (step k of the warmup uses lr·k/W, as
    /// transformers' schedules do).
    #[arg(long, value_name = "W", default_value_t = 100)]
    pub warmup_steps: u64,

    /// After warmup: linear decay to 0 at the last step, cosine decay to 0, or constant.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Linear)]
    pub schedule: ScheduleKind,

    /// AdamW decoupled weight decay, applied to weight matrices only (not biases, LayerNorms
    /// or the position embedding).
    #[arg(long, value_name = "D", default_value_t = 0.01, value_parser = non_negative)]
    pub weight_decay: f64,

    /// AdamW β1.
    #[arg(long, value_name = "B1", default_value_t = 0.9, value_parser = below_one)]
    pub beta1: f64,

    /// AdamW β2.
    #[arg(long, value_name = "B2", default_value_t = 0.999, value_parser = below_one)]
    pub beta2: f64,

    /// AdamW ε, added to the square root of the second moment (PyTorch's placement).
    #[arg(long, value_name = "EPS", default_value_t = 1e-8, value_parser = positive)]
    pub eps: f64,

    /// Scale gradients down when their global L2 norm exceeds G (PyTorch's clip_grad_norm_);
    /// 0 turns clipping off.
    #[arg(long, value_name = "G", default_value_t = 1.0, value_parser = non_negative)]
    pub max_grad_norm: f64,

    /// Override the model's dropout probabilities (embedding, attention, residual).
    #[arg(long, value_name = "P", value_parser = below_one)]
    pub dropout: Option<f64>,

    /// Keep attention within each joke of a packed row, and count positions from each joke's
    /// start (as when the model later generates a joke), using the shards' document
    /// boundaries. Without it, a joke also sees the jokes packed before it in its row.
    #[arg(long)]
    #[serde(default)]
    pub doc_mask: bool,

    /// Train on rows in file order instead of shuffling them each epoch.
    #[arg(long)]
    pub no_shuffle: bool,

    /// Seed for the row order, dropout and random initial weights.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,

    /// Evaluate on the validation split every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub eval_every: u64,

    /// Save a checkpoint every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub save_every: u64,

    /// How many of the latest checkpoints to keep.
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_checkpoints: u32,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A model directory (config.json + model.safetensors) or a Hugging Face Hub id.
    #[arg(long, value_name = "DIR_OR_ID")]
    pub model: String,

    /// A prepared dataset directory.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// Which split to evaluate.
    #[arg(long, value_parser = ["train", "val"], default_value = "val")]
    pub split: String,

    /// Rows per forward pass.
    #[arg(long, value_name = "B", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub micro_batch: u32,

    /// Attend within each document of a packed row only (for a model trained with --doc-mask).
    #[arg(long)]
    pub doc_mask: bool,

    #[arg(long, value_name = "DEVICE", default_value_t, help = device::HELP)]
    pub device: DeviceChoice,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The run directory (train's --out; with --pipeline, the [train] table's out by default).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,

    /// The step whose checkpoint to export (default: the latest intact checkpoint).
    #[arg(long, value_name = "N")]
    pub step: Option<u64>,
}

/// A finite number above 0.
fn positive(text: &str) -> Result<f64, String> {
    number(text, |x| x > 0.0, "above 0")
}

/// A finite number of at least 0.
fn non_negative(text: &str) -> Result<f64, String> {
    number(text, |x| x >= 0.0, "0 or more")
}

/// A probability or decay rate: at least 0, below 1.
fn below_one(text: &str) -> Result<f64, String> {
    number(text, |x| (0.0..1.0).contains(&x), "in [0, 1)")
}

fn number(text: &str, fits: fn(f64) -> bool, range: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if value.is_finite() && fits(value) {
        Ok(value)
    } else {
        Err(format!("{text} is not a number {range}"))
    }
}
