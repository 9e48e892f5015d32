//! The run directory and its `run.json`: every argument and where the run came from, so that a
//! run can be reproduced and `--resume` can refuse flags that would make it a different run.

use crate::cli::TrainArgs;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{fs, path::Path};

pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.png";
pub const FINAL_DIR: &str = "final";

/// Flags that do not change what a run computes: how it is started, where it runs, how often it
/// reports and saves.
const RUN_INDEPENDENT_FLAGS: [&str; 6] = ["resume", "replace", "device", "eval_every", "save_every", "keep_checkpoints"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub args: TrainArgs,
    /// The prepared dataset's manifest lineage hash.
    pub data_lineage: String,
    /// What the weights started from: `sha256:<hash of the weights>` or `random:<preset or config hash> seed <seed>`.
    pub init_hash: String,
    /// The model's config.json as trained (dropout overrides applied).
    pub model_config: Value,
    pub device: String,
    pub rows_per_step: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

/// What to do with the run directory, given what it holds and this run's description.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Nothing there (or a replaced run): start from step 0.
    Start,
    /// The same run, unfinished: continue from its latest checkpoint.
    Resume,
    /// The same run, finished: nothing to do.
    UpToDate,
}

/// Decide, from the run.json in `out` (if any) and this run's `info`. A run with other inputs
/// is deleted only with --replace; an unfinished one is continued only with --resume.
pub fn plan(out: &Path, info: &RunInfo) -> Result<Plan> {
    let run_file = out.join(RUN_FILE);
    if !run_file.exists() {
        return Ok(Plan::Start);
    }
    let recorded: RunInfo = serde_json::from_str(&fs::read_to_string(&run_file).with_context(|| format!("reading {}", run_file.display()))?)
        .with_context(|| format!("{}: not a run description", run_file.display()))?;
    let differences = differences(&recorded, info);
    if !differences.is_empty() {
        if info.args.replace {
            eprintln!("notice: {} held a run with other inputs ({}); deleting it (--replace)", out.display(), differences.join(", "));
            fs::remove_dir_all(out).with_context(|| format!("deleting the old run {}", out.display()))?;
            return Ok(Plan::Start);
        }
        bail!(
            "{} holds a run with other inputs ({} differ): pass --replace to delete it and start over, or choose another --out",
            out.display(),
            differences.join(", ")
        );
    }
    if out.join(FINAL_DIR).join(gpt2::hf::WEIGHTS_FILE).is_file() {
        return Ok(Plan::UpToDate);
    }
    if !info.args.resume {
        bail!("{} holds an unfinished run with these inputs: pass --resume to continue it, or --replace to start over", out.display());
    }
    Ok(Plan::Resume)
}

pub fn write(out: &Path, info: &RunInfo) -> Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    artifact::write_atomically(&out.join(RUN_FILE), serde_json::to_string_pretty(info)? + "\n")
}

/// What makes `now` a different run from `then`: flags (as `--flag-name`), the dataset, the
/// initial weights.
fn differences(then: &RunInfo, now: &RunInfo) -> Vec<String> {
    let as_map = |args: &TrainArgs| match serde_json::to_value(args).expect("arguments serialise") {
        Value::Object(map) => map,
        _ => unreachable!("arguments serialise as an object"),
    };
    let (flags_then, flags_now) = (as_map(&then.args), as_map(&now.args));
    let mut differences: Vec<String> = flags_then
        .iter()
        .filter(|(key, value)| !RUN_INDEPENDENT_FLAGS.contains(&key.as_str()) && flags_now.get(*key) != Some(value))
        .map(|(key, _)| format!("--{}", key.replace('_', "-")))
        .collect();
    if then.data_lineage != now.data_lineage {
        differences.push(format!("the dataset (lineage {} then, {} now)", short(&then.data_lineage), short(&now.data_lineage)));
    }
    if then.init_hash != now.init_hash {
        differences.push(format!("the initial weights ({} then, {} now)", then.init_hash, now.init_hash));
    }
    differences
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}
