//! `train export`: a checkpoint of a run as a model in Hugging Face's layout, so that a run
//! stopped early (or still going) can be sampled, evaluated or loaded in `transformers` from
//! any of the checkpoints it keeps. A run writes its `final/` only when it finishes.

use crate::{checkpoint, cli::ExportArgs, run_dir};
use anyhow::{bail, Context, Result};
use artifact::Staging;
use burn::module::Module;
use gpt2::{Cpu, Gpt2Config};
use shards::Dataset;
use std::path::{Path, PathBuf};

/// Where a run keeps its exports: `RUN/exports/step-NNNNNNN/`, inside the run, so an export
/// never writes where the user keeps anything else, and goes with the run when it is replaced.
pub const EXPORTS_DIR: &str = "exports";

/// Export the checkpoint `args` names (the latest intact one by default) of the run `--run`
/// names, or else the `pipeline` file's run; returns where it went. An earlier export of the
/// same step is replaced whole.
pub fn run(args: &ExportArgs, pipeline: Option<&Path>) -> Result<PathBuf> {
    let run = match (&args.run, pipeline) {
        (Some(run), _) => run.clone(),
        (None, Some(pipeline)) => pipeline_run(pipeline)?,
        (None, None) => bail!("name the run: --run DIR (train's --out), or --pipeline FILE"),
    };
    let info = run_dir::read(&run).with_context(|| format!("{}: not a training run", run.display()))?;
    let checkpoint = match args.step {
        Some(step) => checkpoint::at_step(&run, step)?,
        None => {
            checkpoint::latest_intact(&run)?.with_context(|| format!("{} has no checkpoints yet", run.display()))?
        }
    };
    let config = Gpt2Config::from_hf_json(&info.model_config)
        .with_context(|| format!("{}: the model's config", run.join(run_dir::RUN_FILE).display()))?;
    let device = Default::default();
    let (model, state) = checkpoint::load_model::<Cpu>(&checkpoint, config.init(&device), &device)?;

    // The tokenizer the run trained with is its dataset's, named in run.json as the path it
    // was given.
    let data = info.args.data.as_deref().context("run.json names no dataset")?;
    let tokenizer = match Dataset::open(data) {
        Ok(dataset) => Some(dataset.tokenizer_path()),
        Err(error) => {
            eprintln!(
                "warning: the run's dataset {} cannot be opened ({error:#}), so the export has no tokenizer.json: give sample --tokenizer",
                data.display()
            );
            None
        }
    };

    let exports = run.join(EXPORTS_DIR);
    std::fs::create_dir_all(&exports).with_context(|| format!("creating {}", exports.display()))?;
    let target = exports.join(checkpoint::step_name(state.step));
    artifact::ensure_free(&run, model.num_params() as u64 * 4, "the exported model")?;
    let staging = Staging::new(&target)?;
    gpt2::hf::save(&model, &config, staging.path(), tokenizer.as_deref())?;
    staging.commit()?;
    Ok(target)
}

/// The run directory of a pipeline file: its [train] table's `out`.
fn pipeline_run(pipeline: &Path) -> Result<PathBuf> {
    let flags = pipeline::table_flags(pipeline, "train")?;
    let out = flags.iter().find_map(|flag| flag.to_str()?.strip_prefix("--out=").map(PathBuf::from));
    out.with_context(|| format!("{}: its [train] table has no out", pipeline.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_names_its_run_by_the_train_tables_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jokes.toml");
        std::fs::write(&file, "[prepare]\nout = \"data/prepared/jokes\"\n[train]\nout = \"data/runs/jokes\"\n")
            .unwrap();
        assert_eq!(pipeline_run(&file).unwrap(), PathBuf::from("data/runs/jokes"));
        std::fs::write(&file, "[prepare]\nout = \"data/prepared/jokes\"\n").unwrap();
        assert!(pipeline_run(&file).unwrap_err().to_string().ends_with("its [train] table has no out"));
    }
}
