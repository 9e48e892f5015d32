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

/// Flags that may change when a run is resumed: where it runs and how often it reports.
const RESUMABLE_CHANGES: [&str; 5] = ["resume", "device", "eval_every", "save_every", "keep_checkpoints"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub args: TrainArgs,
    /// The prepared dataset's manifest lineage hash.
    pub data_lineage: String,
    /// What the weights started from: `sha256:<hash of the weights file>` or `random:<spec> seed <seed>`.
    pub init_hash: String,
    /// The model's config.json as trained (dropout overrides applied).
    pub model_config: Value,
    pub device: String,
    pub rows_per_step: usize,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

/// Check that `out` can hold this run: a fresh directory, or with `--resume` one whose run.json
/// records the same run. Returns the recorded run when resuming.
pub fn claim(out: &Path, args: &TrainArgs) -> Result<Option<RunInfo>> {
    let run_file = out.join(RUN_FILE);
    if !args.resume {
        if run_file.exists() {
            bail!("{} already holds a run ({RUN_FILE}): pass --resume to continue it, or choose another --out", out.display());
        }
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        return Ok(None);
    }
    if !run_file.exists() {
        bail!("--resume: {} holds no run ({RUN_FILE} is missing)", out.display());
    }
    let recorded: RunInfo = serde_json::from_str(&fs::read_to_string(&run_file).with_context(|| format!("reading {}", run_file.display()))?)
        .with_context(|| format!("{}: not a run description", run_file.display()))?;
    let changed = changed_flags(&recorded.args, args);
    if !changed.is_empty() {
        bail!(
            "--resume: {} differ from the run in {} ({}); resume with the run's own flags, or start a new run",
            changed.join(", "),
            out.display(),
            RUN_FILE
        );
    }
    Ok(Some(recorded))
}

/// Check a resumed run's starting point against the recorded one.
pub fn check_same_origin(recorded: &RunInfo, current: &RunInfo) -> Result<()> {
    if recorded.data_lineage != current.data_lineage {
        bail!("--resume: the dataset changed since the run started (lineage {} then, {} now)", recorded.data_lineage, current.data_lineage);
    }
    if recorded.init_hash != current.init_hash {
        bail!("--resume: the initial model changed since the run started ({} then, {} now)", recorded.init_hash, current.init_hash);
    }
    Ok(())
}

pub fn write(out: &Path, info: &RunInfo) -> Result<()> {
    artifact::write_atomically(&out.join(RUN_FILE), serde_json::to_string_pretty(info)? + "\n")
}

/// The flags (as `--flag-name`) whose values differ, ignoring those a resume may change.
fn changed_flags(recorded: &TrainArgs, now: &TrainArgs) -> Vec<String> {
    let as_map = |args: &TrainArgs| match serde_json::to_value(args).expect("arguments serialise") {
        Value::Object(map) => map,
        _ => unreachable!("arguments serialise as an object"),
    };
    let (then, now) = (as_map(recorded), as_map(now));
    then.iter()
        .filter(|(key, value)| !RESUMABLE_CHANGES.contains(&key.as_str()) && now.get(*key) != Some(value))
        .map(|(key, _)| format!("--{}", key.replace('_', "-")))
        .collect()
}
