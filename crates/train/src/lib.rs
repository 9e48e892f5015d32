//! The train stage: fine-tune GPT-2 on a prepared dataset with gradient accumulation, matching
//! a `transformers` + `torch.optim.AdamW` training loop step for step.
//!
//! - [`cli`]: the flags.
//! - [`training`]: the run: setup, the step loop, the outputs.
//! - [`workers`]: one worker a device, and the sums across them (`--devices`).
//! - [`batches`]: which rows each step sees; micro-batch tensors.
//! - [`optimizer`]: AdamW with decay on weight matrices only; global-norm clipping.
//! - [`schedule`]: warmup, then linear, cosine or constant.
//! - [`checkpoint`], [`metrics`], [`plot`], [`run_dir`]: what a run leaves on disk.
//! - [`evaluate`]: validation loss and perplexity; `train eval`.
//! - [`export`]: a checkpoint as a model in Hugging Face's layout; `train export`.

pub mod batches;
pub mod checkpoint;
pub mod cli;
mod compatibility;
pub mod evaluate;
pub mod export;
pub mod metrics;
pub mod optimizer;
pub mod plot;
pub mod run_dir;
pub mod schedule;
pub mod training;
pub mod workers;
