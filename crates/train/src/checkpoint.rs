//! Resumable checkpoints: `RUN/checkpoints/step-NNNNNNN/` holds the model and both AdamW
//! groups' state in burn's record format (full precision, parameter ids kept, so the moments
//! stay tied to their weights) and `state.json`. The data position, the learning rate and the
//! dropout random stream are all functions of the step and the seed, so the step is all the
//! progress there is to restore. Each checkpoint is built hidden and renamed into place whole.

use crate::optimizer::GroupedAdamW;
use anyhow::{Context, Result};
use artifact::Staging;
use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkFileRecorder},
    tensor::backend::AutodiffBackend,
};
use gpt2::Gpt2;
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
};

const MODEL_FILE: &str = "model";
const STATE_FILE: &str = "state.json";

/// Progress at the end of an optimizer step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Real (not padding) tokens trained on so far.
    pub tokens: u64,
    /// Training time so far, excluding evaluation and saving.
    pub elapsed_s: f64,
}

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn save<B: AutodiffBackend>(run: &Path, model: &Gpt2<B>, optimizer: &GroupedAdamW<B>, state: TrainState, keep: usize) -> Result<PathBuf> {
    let target = checkpoints_dir(run).join(format!("step-{:07}", state.step));
    let staging = Staging::new(&target)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    model.clone().save_file(staging.path().join(MODEL_FILE), &recorder).context("saving the model checkpoint")?;
    optimizer.save(staging.path())?;
    artifact::write_atomically(&staging.path().join(STATE_FILE), serde_json::to_string_pretty(&state)?)?;
    staging.commit()?;
    for old in list(run)?.iter().rev().skip(keep) {
        fs::remove_dir_all(old).with_context(|| format!("removing the old checkpoint {}", old.display()))?;
    }
    Ok(target)
}

/// Complete checkpoints of `run`, oldest first.
pub fn list(run: &Path) -> Result<Vec<PathBuf>> {
    let dir = checkpoints_dir(run);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")) && path.join(STATE_FILE).is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// Restore model, optimizer and progress from `checkpoint`.
pub fn load<B: AutodiffBackend>(
    checkpoint: &Path,
    model: Gpt2<B>,
    optimizer: GroupedAdamW<B>,
    device: &B::Device,
) -> Result<(Gpt2<B>, GroupedAdamW<B>, TrainState)> {
    let state_path = checkpoint.join(STATE_FILE);
    let state: TrainState = serde_json::from_str(&fs::read_to_string(&state_path).with_context(|| format!("reading {}", state_path.display()))?)
        .with_context(|| format!("{}: not a checkpoint state", state_path.display()))?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model = model
        .load_file(checkpoint.join(MODEL_FILE), &recorder, device)
        .with_context(|| format!("loading the model from {}", checkpoint.display()))?;
    let optimizer = optimizer.load(checkpoint, device)?;
    Ok((model, optimizer, state))
}
