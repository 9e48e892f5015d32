//! The run directory and its `run.json`: every argument and where the run came from, so that a
//! run can be reproduced and `--resume` can refuse flags that would make it a different run.

use crate::{checkpoint::CHECKPOINTS_DIR, cli::TrainArgs, export::EXPORTS_DIR};
use anyhow::{bail, Context, Result};
use artifact::OutputDir;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{fs, path::Path};

pub const RUN_FILE: &str = "run.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.png";
pub const FINAL_DIR: &str = stage::model::RUN_MODEL_DIR;

/// What a run directory may hold: only what train writes there.
pub const RUN_DIR: OutputDir = OutputDir { stage: "train", marker: RUN_FILE, writes: is_run_file };

fn is_run_file(name: &str) -> bool {
    // loss.partial.png: the plot while it is drawn (plot::write), left by a run killed then.
    [RUN_FILE, METRICS_FILE, PLOT_FILE, "loss.partial.png", FINAL_DIR, CHECKPOINTS_DIR, EXPORTS_DIR].contains(&name)
}

/// Flags that do not change what a run computes: how it is started, where it runs, how often it
/// reports and saves.
const RUN_INDEPENDENT_FLAGS: [&str; 8] =
    ["resume", "replace", "delete_replaced", "device", "devices", "eval_every", "save_every", "keep_checkpoints"];

/// Flags that name inputs by path: the run compares what they hold (the dataset's lineage, the
/// initial weights' hash), so a run moved, a dataset copied, or a path spelled another way is
/// still the same run.
const PATH_FLAGS: [&str; 3] = ["data", "init", "out"];

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
    /// A run with other inputs is there and --replace was given: set it aside (or delete it,
    /// with --delete-replaced), then start from step 0.
    Replace { differences: Vec<String> },
}

/// Decide, from the run.json in `out` (if any) and this run's `info`; nothing is changed on
/// disk. A run with other inputs is replaced only with --replace; an unfinished one is
/// continued only with --resume.
pub fn plan(out: &Path, info: &RunInfo) -> Result<Plan> {
    if !out.join(RUN_FILE).exists() {
        return Ok(Plan::Start);
    }
    let differences = differences(&read(out)?, info);
    if !differences.is_empty() {
        if info.args.replace {
            return Ok(Plan::Replace { differences });
        }
        bail!(
            "{} holds a run with other inputs ({} differ): pass --replace to set it aside and start over, or choose another --out",
            out.display(),
            differences.join(", ")
        );
    }
    if out.join(FINAL_DIR).join(gpt2::hf::WEIGHTS_FILE).is_file() {
        return Ok(Plan::UpToDate);
    }
    if !info.args.resume {
        bail!(
            "{} holds an unfinished run with these inputs: pass --resume to continue it, or --replace to start over",
            out.display()
        );
    }
    Ok(Plan::Resume)
}

/// The `run.json` of the run in `out`.
pub fn read(out: &Path) -> Result<RunInfo> {
    let run_file = out.join(RUN_FILE);
    let text = fs::read_to_string(&run_file).with_context(|| format!("reading {}", run_file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a run description", run_file.display()))
}

/// Move the run in `out` aside to `OUT.replaced-YYYYMMDD-HHMMSS` (or delete it, when `delete`),
/// saying so.
pub fn set_aside(out: &Path, differences: &[String], delete: bool) -> Result<()> {
    if delete {
        RUN_DIR.check_replaceable(out)?;
        eprintln!(
            "notice: {} held a run with other inputs ({}); deleting it (--delete-replaced)",
            out.display(),
            differences.join(", ")
        );
        return fs::remove_dir_all(out).with_context(|| format!("deleting the old run {}", out.display()));
    }
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let name = out.file_name().context("--out has no directory name")?.to_string_lossy();
    let aside = (0..)
        .map(|n| match n {
            0 => out.with_file_name(format!("{name}.replaced-{stamp}")),
            n => out.with_file_name(format!("{name}.replaced-{stamp}-{n}")),
        })
        .find(|path| !path.exists())
        .expect("some name is free");
    fs::rename(out, &aside)
        .with_context(|| format!("moving the old run {} aside to {}", out.display(), aside.display()))?;
    eprintln!(
        "notice: {} held a run with other inputs ({}); moved it to {} (delete it when no longer needed)",
        out.display(),
        differences.join(", "),
        aside.display()
    );
    Ok(())
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
        .filter(|(key, value)| {
            let key = key.as_str();
            !RUN_INDEPENDENT_FLAGS.contains(&key) && !PATH_FLAGS.contains(&key) && flags_now.get(key) != Some(value)
        })
        .map(|(key, _)| format!("--{}", key.replace('_', "-")))
        .collect();
    if then.data_lineage != now.data_lineage {
        differences.push(format!(
            "the dataset (lineage {} then, {} now)",
            short(&then.data_lineage),
            short(&now.data_lineage)
        ));
    }
    if then.init_hash != now.init_hash {
        differences.push(format!("the initial weights ({} then, {} now)", then.init_hash, now.init_hash));
    }
    differences
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_killed_anywhere_is_still_a_run() {
        let run = tempfile::tempdir().unwrap();
        for file in [RUN_FILE, METRICS_FILE, "loss.partial.png"] {
            fs::write(run.path().join(file), "").unwrap();
        }
        for dir in [CHECKPOINTS_DIR, EXPORTS_DIR, ".final.partial-4242"] {
            fs::create_dir(run.path().join(dir)).unwrap();
        }
        RUN_DIR.check_replaceable(run.path()).unwrap();
        fs::write(run.path().join("notes.txt"), "mine").unwrap();
        assert!(RUN_DIR.check_replaceable(run.path()).is_err());
    }
}
