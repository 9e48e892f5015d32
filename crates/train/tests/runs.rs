//! What a user relies on beyond the numbers: accumulation, resuming, bad input, the export.

mod common;

use common::*;
use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The first step's line of a run's metrics.jsonl.
fn first_step(run: &Path) -> train::metrics::StepMetrics {
    match train::metrics::read(&run.join("metrics.jsonl")).unwrap().into_iter().next() {
        Some(train::metrics::Line::Step(step)) => step,
        _ => panic!("{}: no step line", run.display()),
    }
}

fn final_weights(run: &Path) -> Vec<u8> {
    fs::read(run.join("final/model.safetensors")).unwrap()
}

#[test]
fn accumulating_four_micro_batches_of_one_is_one_batch_of_four() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let run = |name: &str, micro: &str, accum: &str| {
        let out = dir.path().join(name);
        let argv = parity_args(
            &data,
            &out,
            &["--micro-batch", micro, "--grad-accum", accum, "--max-steps", "1", "--warmup-steps", "0"],
        );
        train::training::train(&train_args(&argv)).unwrap();
        (first_step(&out), without_key_bias(tensors(&out.join("final/model.safetensors"))))
    };
    let ((step_a, accumulated), (step_b, batched)) = (run("4x1", "1", "4"), run("1x4", "4", "1"));
    // The loss and gradient norm show any wrong weighting of the micro-batches directly.
    assert!((step_a.loss - step_b.loss).abs() <= 1e-6 * step_b.loss, "loss {} vs {}", step_a.loss, step_b.loss);
    assert!(
        (step_a.grad_norm - step_b.grad_norm).abs() <= 1e-5 * step_b.grad_norm,
        "grad norm {} vs {}",
        step_a.grad_norm,
        step_b.grad_norm
    );
    // Adam's first step moves each weight by about ±lr (1e-3); gradients near zero turn
    // rounding differences into update differences of a few lr·1e-3.
    let difference = max_abs_difference(&accumulated, &batched);
    assert!(difference <= 2e-5, "4 × 1 and 1 × 4 differ by up to {difference}");
    let initial = without_key_bias(tensors(&tiny_model().join("model.safetensors")));
    assert!(max_abs_difference(&accumulated, &initial) > 5e-4, "no update happened");
}

#[test]
fn doc_mask_trains_and_evaluates_each_joke_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let argv = parity_args(&data, &out, &[&["--max-steps", "2", "--eval-every", "0"], extra].concat());
        train::training::train(&train_args(&argv)).unwrap();
        out
    };
    let (plain, masked) = (run("plain", &[]), run("masked", &["--doc-mask"]));
    // The fixture packs several documents per row, so the mask changes what the model sees.
    assert!((first_step(&plain).loss - first_step(&masked).loss).abs() > 1e-4);

    let eval = |model: &Path, doc_mask: bool| {
        let args = train::cli::EvalArgs {
            model: model.join("final").display().to_string(),
            data: data.clone(),
            split: "val".into(),
            micro_batch: 2,
            doc_mask,
            device: stage::device::DeviceChoice::Cpu,
        };
        train::evaluate::run(&args).unwrap().loss
    };
    let last_eval = match train::metrics::read(&masked.join("metrics.jsonl")).unwrap().pop() {
        Some(train::metrics::Line::Eval(eval)) => eval.loss,
        _ => panic!("no final evaluation"),
    };
    // The run's own final evaluation is `train eval --doc-mask` on its export.
    assert!((eval(&masked, true) - last_eval).abs() <= 1e-6 * last_eval);
    assert!((eval(&masked, false) - last_eval).abs() > 1e-4);
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    // Shuffling and dropout on, so that the row order and the dropout stream must resume too.
    let flags = ["--epochs", "60", "--save-every", "25", "--dropout", "0.1", "--seed", "5"];
    let args = |out: &Path| {
        let mut argv = parity_args(&data, out, &flags);
        argv.retain(|a| a != "--no-shuffle");
        argv
    };
    let whole = dir.path().join("whole");
    assert!(train_bin(&args(&whole)).stderr(Stdio::null()).status().unwrap().success());

    let killed = dir.path().join("killed");
    kill_at_a_checkpoint(&args(&killed), &killed);
    // The unfinished run's checkpoint as a model, written inside the run, which stays resumable.
    let export = |step: Option<&str>| {
        let mut argv = ["train", "export", "--run"].map(String::from).to_vec();
        argv.push(killed.display().to_string());
        argv.extend(step.map(|step| ["--step".to_string(), step.to_string()]).into_iter().flatten());
        train_bin(&argv).output().unwrap()
    };
    let output = export(None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let exported = fs::read_dir(killed.join("exports")).unwrap().next().unwrap().unwrap().path();
    let (_, model) = gpt2::hf::load_dir::<gpt2::Cpu>(&exported, &Default::default()).unwrap();
    assert!(exported.join("tokenizer.json").is_file());
    assert_eq!(model.h.len(), 2);
    let output = export(Some("7"));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && error.contains("no checkpoint of step 7 (it keeps steps"), "{error}");

    let mut resumed = args(&killed);
    resumed.push("--resume".into());
    let output = train_bin(&resumed).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("resuming from"));
    assert!(final_weights(&whole) == final_weights(&killed), "the resumed run ended with different weights");
    let steps = |run: &Path| {
        let lines = train::metrics::read(&run.join("metrics.jsonl")).unwrap();
        lines.iter().filter(|l| matches!(l, train::metrics::Line::Step(_))).map(|l| l.step()).collect::<Vec<_>>()
    };
    assert_eq!(steps(&killed), steps(&whole), "metrics.jsonl should hold each step once");
    assert_eq!(fs::read_dir(killed.join("checkpoints")).unwrap().count(), 2, "--keep-checkpoints 2");
    // The last step's checkpoint exports to the run's own model, byte for byte.
    assert!(export(None).status.success());
    let last = train::checkpoint::list(&killed).unwrap().pop().unwrap();
    let last = killed.join("exports").join(last.file_name().unwrap());
    assert!(fs::read(last.join("model.safetensors")).unwrap() == final_weights(&killed));
}

#[test]
fn a_finished_run_is_left_alone_and_other_inputs_need_replace() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let run = |extra: &[&str]| train::training::train(&train_args(&parity_args(&data, &out, extra)));
    run(&["--max-steps", "2"]).unwrap();
    let before = final_weights(&out);
    // The same inputs: nothing to do, whatever the reporting flags say.
    let again = run(&["--max-steps", "2", "--eval-every", "5"]).unwrap();
    assert!(again.up_to_date && before == final_weights(&out));
    // Other inputs: refused, naming them, unless --replace.
    let changed = format!("{:#}", run(&["--max-steps", "2", "--lr", "0.5", "--resume"]).unwrap_err());
    assert!(changed.contains("--lr") && changed.contains("--replace"), "{changed}");
    let replaced = run(&["--max-steps", "2", "--lr", "0.5", "--replace"]).unwrap();
    assert!(!replaced.up_to_date && before != final_weights(&out));
    // An unfinished run continues only when asked to.
    std::fs::remove_dir_all(out.join("final")).unwrap();
    let unfinished = format!("{:#}", run(&["--max-steps", "2", "--lr", "0.5"]).unwrap_err());
    assert!(unfinished.contains("unfinished run") && unfinished.contains("--resume"), "{unfinished}");
    // Killed after its last checkpoint: resuming exports again, without a second final evaluation.
    let resumed = run(&["--max-steps", "2", "--lr", "0.5", "--resume"]).unwrap();
    assert!(resumed.exported.is_some() && out.join("final/model.safetensors").is_file());
    let lines = train::metrics::read(&out.join("metrics.jsonl")).unwrap();
    let evals = lines.iter().filter(|l| matches!(l, train::metrics::Line::Eval(_))).count();
    assert_eq!((lines.len(), evals), (3, 1), "{lines:?}");
}

#[test]
fn diverging_stops_with_the_last_good_checkpoint_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    // Adam moves every weight by about lr on step 1: at 1e30 the next loss is not finite.
    let argv =
        parity_args(&data, &out, &["--lr", "1e30", "--warmup-steps", "0", "--max-grad-norm", "0", "--save-every", "1"]);
    let error = format!("{:#}", train::training::train(&train_args(&argv)).unwrap_err());
    assert!(error.contains("step 2") && error.contains("training diverged"), "{error}");
    assert!(error.contains("step-0000001"), "the message should name the last good checkpoint: {error}");
    assert!(out.join("checkpoints/step-0000001/state.json").is_file());
    assert!(!out.join("final").exists(), "a diverged run must not export");
}

#[test]
fn bad_data_and_mismatched_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let error = |data: &Path, extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let argv = parity_args(data, &out.path().join("run"), extra);
        format!("{:#}", train::training::train(&train_args(&argv)).unwrap_err())
    };

    let missing = error(&dir.path().join("nowhere"), &[]);
    assert!(missing.contains("nowhere") && missing.matches("no prepared dataset").count() == 1, "{missing}");
    let not_prepared = error(dir.path(), &[]);
    assert!(not_prepared.contains("not a prepared dataset (no manifest.json"), "{not_prepared}");

    // A model whose tokenizer is not the dataset's.
    let model = dir.path().join("model");
    fs::create_dir(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        fs::copy(tiny_model().join(file), model.join(file)).unwrap();
    }
    let tokenizer = fs::read_to_string(fixtures().join("tokenizer.json")).unwrap().replace("\"t7\"", "\"seven\"");
    fs::write(model.join("tokenizer.json"), tokenizer).unwrap();
    let mismatch = error(&data, &["--init", model.to_str().unwrap()]);
    assert!(mismatch.contains("different tokenizer") && mismatch.contains("parity fixture"), "{mismatch}");

    // Rows longer than the model's positions.
    let config = dir.path().join("short.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tiny_model().join("config.json")).unwrap()).unwrap();
    value["n_positions"] = 16.into();
    fs::write(&config, value.to_string()).unwrap();
    let too_long = error(&data, &["--init", &format!("random:{}", config.display())]);
    assert!(too_long.contains("16 positions") && too_long.contains("--seq-len"), "{too_long}");

    // bf16 on the CPU backend, which has no bf16 tensors.
    let bf16 = error(&data, &["--device", "cpu", "--precision", "bf16"]);
    assert!(bf16.contains("--precision bf16 needs a CUDA device"), "{bf16}");

    // A corrupt shard.
    let shard = data.join("train-00000.shard");
    let mut bytes = fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&shard, bytes).unwrap();
    let corrupt = error(&data, &[]);
    assert!(corrupt.contains("train-00000.shard") && corrupt.contains("checksum"), "{corrupt}");
}

#[test]
fn the_export_loads_in_the_sample_stage_and_the_run_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    train::training::train(&train_args(&parity_args(&data, &out, &["--max-steps", "3", "--eval-every", "2"]))).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join("final").join(file).is_file(), "final/{file}");
    }
    let run: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["total_steps"], 3);
    assert!(run["init_hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(run["data_lineage"].as_str().unwrap(), shards::Dataset::open(&data).unwrap().manifest.lineage);
    let lines = train::metrics::read(&out.join("metrics.jsonl")).unwrap();
    let evals: Vec<u64> =
        lines.iter().filter(|l| matches!(l, train::metrics::Line::Eval(_))).map(|l| l.step()).collect();
    assert_eq!(evals, [2, 3]);
    assert!(out.join("loss.png").is_file(), "loss.png");

    use clap::Parser;
    let model = out.join("final").display().to_string();
    let cli = sample::cli::Cli::parse_from([
        "sample",
        "--model",
        &model,
        "--prompt",
        "t1 t2",
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
        "--greedy",
    ]);
    let records = sample::run::run(&cli).unwrap().records;
    assert_eq!(records.len(), 1);
    assert!(!records[0].tokens.is_empty());
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let child = train_bin(&parity_args(&data, &out, &["--epochs", "100000"])).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while fs::read_to_string(out.join("metrics.jsonl")).map_or(true, |m| m.lines().count() < 3) {
        assert!(started.elapsed() < Duration::from_secs(120), "the run made no progress");
        thread::sleep(Duration::from_millis(5));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--resume"));
    let checkpoints = train::checkpoint::list(&out).unwrap();
    assert_eq!(checkpoints.len(), 1);
    let steps = train::metrics::read(&out.join("metrics.jsonl")).unwrap().len() as u64;
    assert!(checkpoints[0].ends_with(format!("step-{steps:07}")), "{checkpoints:?} after {steps} steps");
}
