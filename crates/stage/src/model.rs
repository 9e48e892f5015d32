//! A model named on the command line: a local directory in the Hugging Face layout, or a Hub
//! id whose files come through the cache shared with the Hub's own clients.

use anyhow::{bail, Result};
use fetch::Named;
use gpt2::hf::{self, CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use std::path::{Path, PathBuf};

/// Where a train run keeps its model in Hugging Face's layout (train's `run_dir::FINAL_DIR`).
pub const RUN_MODEL_DIR: &str = "final";

/// Where a train run keeps its checkpoints (train's `checkpoint::CHECKPOINTS_DIR`).
pub const RUN_CHECKPOINTS_DIR: &str = "checkpoints";

/// The local directory of a model directory or Hub id, downloading a Hub model's files
/// (config, weights, and its tokenizer where it has one) into the Hub cache when they are not
/// there yet.
pub fn locate(spec: &str) -> Result<PathBuf> {
    let spec = match fetch::local_or_hub(spec) {
        Named::Local(dir) if dir.is_dir() => return local_model(dir, spec),
        Named::Local(_) => bail!("model {spec}: no such directory (give a model directory or a Hugging Face Hub id)"),
        Named::Hub(repo) => repo,
    };
    let config = fetch::hub_file(spec, CONFIG_FILE)?;
    if let Err(weights_error) = fetch::hub_file(spec, WEIGHTS_FILE) {
        // Large models come sharded; when there is no index either, the single file is
        // what to tell the user about.
        let Ok(index) = fetch::hub_file(spec, WEIGHTS_INDEX_FILE) else { return Err(weights_error) };
        for shard in hf::shard_files(&index)? {
            fetch::hub_file(spec, &shard)?;
        }
    }
    fetch::hub_file(spec, tokenizer::FILE_NAME).ok();
    Ok(config.parent().expect("a file in a snapshot directory").to_path_buf())
}

/// `dir` when it holds a model's config; otherwise what it is instead, and where the model is.
fn local_model(dir: &Path, spec: &str) -> Result<PathBuf> {
    if dir.join(CONFIG_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    let run_model = dir.join(RUN_MODEL_DIR);
    if run_model.join(CONFIG_FILE).is_file() {
        bail!("model {spec}: a training run; its model is {}", run_model.display());
    }
    if dir.join(RUN_CHECKPOINTS_DIR).is_dir() {
        bail!(
            "model {spec}: an unfinished training run (its model, {RUN_MODEL_DIR}/, is written when it ends); \
             `train export --run {spec}` writes its latest checkpoint as a model"
        );
    }
    if let (Some(checkpoints), Some(name)) = (dir.parent(), dir.file_name()) {
        if checkpoints.file_name().is_some_and(|parent| parent == RUN_CHECKPOINTS_DIR) {
            let run = checkpoints.parent().unwrap_or(Path::new("."));
            let step = name.to_string_lossy().trim_start_matches("step-").trim_start_matches('0').to_string();
            let step = if step.is_empty() { "0".to_string() } else { step };
            bail!(
                "model {spec}: a training checkpoint, for train --resume; `train export --run {} --step {step}` \
                 writes it as a model",
                run.display()
            );
        }
    }
    bail!(
        "model {spec}: no {CONFIG_FILE} here, so not a model in Hugging Face's layout (a training run's model is \
         its {RUN_MODEL_DIR}/ directory, written when the run ends; `train export` writes one of its checkpoints)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_run_directory_or_checkpoint_points_to_the_runs_model() {
        let run = tempfile::tempdir().unwrap();
        let model = run.path().join(RUN_MODEL_DIR);
        let checkpoint = run.path().join("checkpoints/step-0000004");
        fs::create_dir_all(&checkpoint).unwrap();
        fs::create_dir_all(&model).unwrap();
        fs::write(model.join(CONFIG_FILE), "{}").unwrap();

        assert_eq!(locate(model.to_str().unwrap()).unwrap(), model);
        let spec = run.path().to_str().unwrap();
        let error = locate(spec).unwrap_err().to_string();
        assert_eq!(error, format!("model {spec}: a training run; its model is {}", model.display()));
        let error = locate(checkpoint.to_str().unwrap()).unwrap_err().to_string();
        assert!(
            error.ends_with(&format!(
                "a training checkpoint, for train --resume; `train export --run {spec} --step 4` writes it as a model"
            )),
            "{error}"
        );

        fs::remove_dir_all(&model).unwrap();
        let error = locate(spec).unwrap_err().to_string();
        assert!(error.contains("an unfinished training run"), "{error}");
        assert!(error.ends_with(&format!("`train export --run {spec}` writes its latest checkpoint as a model")));
    }
}
