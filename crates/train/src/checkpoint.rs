//! Resumable checkpoints: `RUN/checkpoints/step-NNNNNNN/` holds the model and AdamW's state in
//! burn's record format (full precision, parameter ids kept, so the moments stay tied to their
//! weights) and `state.json`. The data position, the learning rate and the
//! dropout random stream are all functions of the step and the seed, so the step is all the
//! progress there is to restore. Each checkpoint is built hidden and renamed into place whole,
//! with the sha256 of every file in `SHA256SUMS` (written last, in `sha256sum`'s format), so a
//! checkpoint damaged after it was saved is found before it is trusted.

use crate::optimizer::GroupedAdamW;
use anyhow::{bail, Context, Result};
use artifact::{Leftovers, Staging};
use burn::{
    module::Module,
    record::{FullPrecisionSettings, NamedMpkFileRecorder},
    tensor::backend::{AutodiffBackend, Backend},
};
use gpt2::Gpt2;
use serde::{Deserialize, Serialize};
use std::{
    fs,
    path::{Path, PathBuf},
};

const MODEL_FILE: &str = "model";
const STATE_FILE: &str = "state.json";
const CHECKSUMS_FILE: &str = "SHA256SUMS";

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

pub const CHECKPOINTS_DIR: &str = stage::model::RUN_CHECKPOINTS_DIR;

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join(CHECKPOINTS_DIR)
}

/// The directory name of what a run keeps of `step`: its checkpoint, and its export.
pub fn step_name(step: u64) -> String {
    format!("step-{step:07}")
}

pub fn save<B: AutodiffBackend>(
    run: &Path,
    model: &Gpt2<B>,
    optimizer: &GroupedAdamW<B>,
    state: TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let target = checkpoints_dir(run).join(step_name(state.step));
    // The weights and AdamW's two moments, all f32.
    let needed = model.num_params() as u64 * 4 * 3;
    artifact::ensure_free(run, needed, "a checkpoint")?;
    // A run killed while saving left its checkpoint half-built under another step's name.
    artifact::remove_dead_leftovers(&checkpoints_dir(run), Leftovers::All);
    let staging = Staging::new(&target)?;
    let written = (|| {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        model.clone().save_file(staging.path().join(MODEL_FILE), &recorder).context("saving the model checkpoint")?;
        optimizer.save(staging.path())?;
        artifact::write_atomically(&staging.path().join(STATE_FILE), serde_json::to_string_pretty(&state)?)?;
        write_checksums(staging.path())
    })();
    if let Err(error) = written {
        // A full disk reads as a serializer's error: say what it is while the partial
        // checkpoint still takes its space.
        artifact::ensure_free(run, needed, "a checkpoint")?;
        return Err(error);
    }
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
        .filter(|path| {
            path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-"))
                && path.join(STATE_FILE).is_file()
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Record the sha256 of every file in `dir`.
fn write_checksums(dir: &Path) -> Result<()> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    let mut lines = String::new();
    for name in names {
        let sha256 = artifact::sha256_file(&dir.join(&name))
            .with_context(|| format!("reading {}", dir.join(&name).display()))?;
        lines += &format!("{sha256}  {name}\n");
    }
    artifact::write_atomically(&dir.join(CHECKSUMS_FILE), lines)
}

/// Check every file of `checkpoint` against the sha256 recorded when it was saved.
pub fn verify(checkpoint: &Path) -> Result<()> {
    let sums_path = checkpoint.join(CHECKSUMS_FILE);
    let sums = fs::read_to_string(&sums_path).with_context(|| format!("it has no readable {CHECKSUMS_FILE}"))?;
    let mut listed = 0;
    for line in sums.lines() {
        let Some((expected, name)) = line.split_once("  ") else { bail!("{CHECKSUMS_FILE} is damaged") };
        let actual = artifact::sha256_file(&checkpoint.join(name)).with_context(|| format!("{name} cannot be read"))?;
        if actual != expected {
            bail!("{name} has changed since it was saved (its sha256 differs from the one in {CHECKSUMS_FILE})");
        }
        listed += 1;
    }
    let files = fs::read_dir(checkpoint)?.count() - 1;
    if listed == 0 || listed != files {
        bail!("{CHECKSUMS_FILE} lists {listed} files but the checkpoint holds {files}");
    }
    Ok(())
}

/// The newest checkpoint of `run` whose files are as saved. Damaged ones are named, and passed
/// over for the one before; `Ok(None)` when there are none at all.
pub fn latest_intact(run: &Path) -> Result<Option<PathBuf>> {
    let all = list(run)?;
    let mut damaged = Vec::new();
    for checkpoint in all.iter().rev() {
        match verify(checkpoint) {
            Ok(()) => {
                if !damaged.is_empty() {
                    eprintln!("warning: resuming from the previous intact checkpoint, {}", checkpoint.display());
                }
                return Ok(Some(checkpoint.clone()));
            }
            Err(error) => {
                eprintln!("warning: checkpoint {} is damaged: {error:#}", checkpoint.display());
                damaged.push(checkpoint.display().to_string());
            }
        }
    }
    if damaged.is_empty() {
        return Ok(None);
    }
    bail!(
        "every checkpoint of {} is damaged ({}): restore them from a backup, or start over with --replace",
        run.display(),
        damaged.join(", ")
    )
}

/// The checkpoint of `run` saved after `step`, checked as [`verify`] does.
pub fn at_step(run: &Path, step: u64) -> Result<PathBuf> {
    let checkpoint = checkpoints_dir(run).join(step_name(step));
    if !checkpoint.join(STATE_FILE).is_file() {
        let kept: Vec<String> =
            list(run)?.iter().filter_map(|path| Some(load_state(path).ok()?.step.to_string())).collect();
        match kept.is_empty() {
            true => bail!("{} has no checkpoints", run.display()),
            false => bail!("{} has no checkpoint of step {step} (it keeps steps {})", run.display(), kept.join(", ")),
        }
    }
    verify(&checkpoint).with_context(|| format!("checkpoint {} is damaged", checkpoint.display()))?;
    Ok(checkpoint)
}

/// Restore model, optimizer and progress from `checkpoint` (one [`latest_intact`] found).
pub fn load<B: AutodiffBackend>(
    checkpoint: &Path,
    model: Gpt2<B>,
    optimizer: GroupedAdamW<B>,
    device: &B::Device,
) -> Result<(Gpt2<B>, GroupedAdamW<B>, TrainState)> {
    let (model, state) = load_model(checkpoint, model, device)?;
    let optimizer = optimizer.load(checkpoint, &model, device)?;
    Ok((model, optimizer, state))
}

/// The weights of `checkpoint` in `model` (of the run's config), and the progress it was saved
/// at; on any backend, with or without autodiff.
pub fn load_model<B: Backend>(checkpoint: &Path, model: Gpt2<B>, device: &B::Device) -> Result<(Gpt2<B>, TrainState)> {
    let state = load_state(checkpoint)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model = model
        .load_file(checkpoint.join(MODEL_FILE), &recorder, device)
        .with_context(|| format!("loading the model from {}", checkpoint.display()))?;
    Ok((model, state))
}

fn load_state(checkpoint: &Path) -> Result<TrainState> {
    let state_path = checkpoint.join(STATE_FILE);
    serde_json::from_str(&fs::read_to_string(&state_path).with_context(|| format!("reading {}", state_path.display()))?)
        .with_context(|| format!("{}: not a checkpoint state", state_path.display()))
}
