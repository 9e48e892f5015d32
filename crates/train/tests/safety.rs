//! What train refuses, keeps and reports so that no run or file of the user's is lost, and no
//! number it prints is made up.

mod common;

use common::*;
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

fn run(args: &[String]) -> anyhow::Result<train::training::Summary> {
    train::training::train(&train_args(args))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn an_out_that_is_not_a_run_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let before = snapshot(dir.path());
    // The dataset itself, a directory of the user's files, and a file.
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    for out in [data.clone(), dir.path().to_path_buf(), dir.path().join("notes.txt")] {
        let error = format!("{:#}", run(&parity_args(&data, &out, &["--max-steps", "1", "--replace"])).unwrap_err());
        assert!(error.contains("train --out") && error.contains(&out.display().to_string()), "{error}");
    }
    fs::remove_file(dir.path().join("notes.txt")).unwrap();
    let after: Vec<_> =
        snapshot(dir.path()).into_iter().filter(|(p, _)| !p.to_string_lossy().ends_with(".lock")).collect();
    assert!(before == after, "train changed files that were not its own");
}

/// A child process that is killed if the test fails before it ends: a run of 100,000 epochs
/// must not outlive its test.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn wait(mut self) -> Output {
        self.0.take().expect("running").wait_with_output().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

#[test]
fn a_second_run_on_the_same_out_is_refused_and_sigterm_saves_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let first = train_bin(&parity_args(&data, &out, &["--epochs", "100000"])).stderr(Stdio::piped()).spawn().unwrap();
    let first = KillOnDrop(Some(first));
    let started = Instant::now();
    while fs::read_to_string(out.join("metrics.jsonl")).map_or(true, |m| m.lines().count() < 2) {
        assert!(started.elapsed() < Duration::from_secs(120), "the run made no progress");
        thread::sleep(Duration::from_millis(5));
    }
    // The pipelines' flags: without the lock this would set the first run aside and start over.
    let second = train_bin(&parity_args(&data, &out, &["--epochs", "3", "--resume", "--replace"])).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains(&format!("is being written by train (pid {})", first.id())),
        "{}",
        stderr(&second)
    );

    assert!(Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap().success());
    let output = first.wait();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert_eq!(train::checkpoint::list(&out).unwrap().len(), 1, "SIGTERM should save a checkpoint");
    let siblings: Vec<_> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!siblings.iter().any(|name| name.contains("replaced")), "{siblings:?}");
}

#[test]
fn a_run_is_known_by_its_contents_not_by_how_its_paths_are_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    run(&parity_args(&data, &out, &["--max-steps", "2"])).unwrap();
    // The run moved, the dataset copied, the paths written another way.
    let (moved, copied) = (dir.path().join("moved"), dir.path().join("copy"));
    fs::rename(&out, &moved).unwrap();
    fs::create_dir(&copied).unwrap();
    for entry in fs::read_dir(&data).unwrap().flatten() {
        fs::copy(entry.path(), copied.join(entry.file_name())).unwrap();
    }
    let spelled = |path: &Path| PathBuf::from(format!("{}/./", path.display()));
    let again = run(&parity_args(&spelled(&copied), &spelled(&moved), &["--max-steps", "2", "--resume"])).unwrap();
    assert!(again.up_to_date);
}

#[test]
fn bad_initial_weights_leave_no_run_behind_to_refuse_the_fixed_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let model = dir.path().join("model");
    fs::create_dir(&model).unwrap();
    fs::copy(tiny_model().join("config.json"), model.join("config.json")).unwrap();
    let weights = fs::read(tiny_model().join("model.safetensors")).unwrap();
    fs::write(model.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let argv = |extra: &[&str]| {
        let mut argv = parity_args(&data, &out, &["--max-steps", "1"]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    };
    run(&argv(&["--init", model.to_str().unwrap()])).unwrap_err();
    assert!(!out.join("run.json").exists(), "run.json written before the weights loaded");
    fs::write(model.join("model.safetensors"), &weights).unwrap();
    run(&argv(&["--init", model.to_str().unwrap()])).unwrap();
}

#[test]
fn replace_keeps_the_old_run_aside_unless_told_to_delete_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    run(&parity_args(&data, &out, &["--max-steps", "2"])).unwrap();
    let first = fs::read(out.join("final/model.safetensors")).unwrap();
    run(&parity_args(&data, &out, &["--max-steps", "2", "--lr", "0.5", "--replace"])).unwrap();
    let aside: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("run.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old run should be kept beside the new one");
    assert!(fs::read(aside[0].join("final/model.safetensors")).unwrap() == first);

    run(&parity_args(&data, &out, &["--max-steps", "2", "--lr", "0.25", "--replace", "--delete-replaced"])).unwrap();
    let runs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("run"))
        .count();
    assert_eq!(runs, 2, "--delete-replaced deletes the replaced run");
}

#[test]
fn zero_steps_bad_numbers_and_too_large_micro_batches_are_refused() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let refused = [
        ["--epochs", "0"],
        ["--max-steps", "0"],
        ["--lr", "NaN"],
        ["--lr", "-1e-4"],
        ["--beta2", "1"],
        ["--eps", "0"],
        ["--weight-decay", "-0.1"],
        ["--max-grad-norm", "inf"],
        ["--dropout", "1.5"],
    ];
    for [flag, value] in refused {
        let error = train::cli::Cli::try_parse_from(parity_args(&data, &out, &[&format!("{flag}={value}")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains(flag), "{flag} {value}: {error}");
    }
    let error = format!("{:#}", run(&parity_args(&data, &out, &["--micro-batch", "100000"])).unwrap_err());
    assert!(error.contains("--micro-batch 100000") && error.contains("30"), "{error}");
    assert!(!out.exists());
}

#[test]
fn no_validation_split_means_no_validation_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset_without_validation(&data);
    let output = train_bin(&parity_args(&data, &out, &["--max-steps", "3", "--eval-every", "1"])).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("no validation rows"), "{}", stderr(&output));
    assert!(!String::from_utf8_lossy(&output.stdout).contains("validation loss"));
    let lines = train::metrics::read(&out.join("metrics.jsonl")).unwrap();
    assert!(lines.iter().all(|l| matches!(l, train::metrics::Line::Step(_))), "{lines:?}");
}

#[test]
fn a_damaged_latest_checkpoint_is_named_and_the_previous_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let (data, whole, damaged) = (dir.path().join("data"), dir.path().join("whole"), dir.path().join("damaged"));
    write_dataset(&data);
    let flags = ["--max-steps", "4", "--save-every", "1", "--keep-checkpoints", "3"];
    run(&parity_args(&data, &whole, &flags)).unwrap();
    run(&parity_args(&data, &damaged, &flags)).unwrap();
    // Unfinished again, with its newest checkpoint damaged in each way a disk or a hand can.
    fs::remove_dir_all(damaged.join("final")).unwrap();
    let resume = || train_bin(&parity_args(&data, &damaged, &[&flags[..], &["--resume"]].concat())).output().unwrap();
    let model = damaged.join("checkpoints/step-0000004/model.mpk");
    let mut bytes = fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs::write(&model, &bytes).unwrap();
    let state = damaged.join("checkpoints/step-0000003/state.json");
    fs::write(&state, fs::read_to_string(&state).unwrap().replace("\"step\": 3", "\"step\": 4")).unwrap();

    let output = resume();
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("step-0000004 is damaged: model.mpk has changed"), "{log}");
    assert!(log.contains("step-0000003 is damaged: state.json has changed"), "{log}");
    assert!(log.contains("resuming from the previous intact checkpoint") && log.contains("step-0000002"), "{log}");
    assert!(
        fs::read(whole.join("final/model.safetensors")).unwrap()
            == fs::read(damaged.join("final/model.safetensors")).unwrap()
    );

    // None intact: refused, naming them.
    fs::remove_dir_all(damaged.join("final")).unwrap();
    for checkpoint in train::checkpoint::list(&damaged).unwrap() {
        fs::write(checkpoint.join("state.json"), "{}").unwrap();
    }
    let output = resume();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("every checkpoint of"), "{}", stderr(&output));
}

#[test]
fn impossible_model_sizes_and_manifests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let config = dir.path().join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(tiny_model().join("config.json")).unwrap()).unwrap();
    value["n_embd"] = 0.into();
    fs::write(&config, value.to_string()).unwrap();
    let error = format!(
        "{:#}",
        run(&parity_args(&data, &out, &["--init", &format!("random:{}", config.display())])).unwrap_err()
    );
    assert!(error.contains("`n_embd` is 0"), "{error}");

    // A manifest whose end-of-text id is outside its vocabulary (sealed again, as if prepare wrote it).
    let path = data.join(shards::MANIFEST_FILE);
    let mut manifest: shards::Manifest = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    manifest.tokenizer.eos_id = manifest.tokenizer.vocab_size;
    manifest.seal();
    fs::write(&path, manifest.to_json_pretty()).unwrap();
    let error = format!("{:#}", run(&parity_args(&data, &out, &[])).unwrap_err());
    assert!(error.contains("eos_id 512 is outside the tokenizer's 512 tokens"), "{error}");
}

/// A small filesystem of its own, unmounted when dropped; none where this process may not
/// mount one (not root, or in a container without the right).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status();
        mounted.is_ok_and(|status| status.success()).then(|| Self(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
    }
}

#[test]
fn a_full_disk_is_called_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    // Room for run.json and metrics.jsonl, not for a checkpoint of ~0.5 MB.
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "128k") else {
        eprintln!("skipped: this process cannot mount a small tmpfs to fill");
        return;
    };
    let out = disk.0.join("run");
    let error = format!("{:#}", run(&parity_args(&data, &out, &["--max-steps", "2"])).unwrap_err());
    assert!(
        error.contains(&format!("the disk holding {} is full: a checkpoint needs about", out.display())),
        "{error}"
    );
    assert!(train::checkpoint::list(&out).unwrap().is_empty());
}

#[test]
fn a_run_resumed_only_to_export_reports_no_made_up_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    // Warmup longer than the run: said once, as the run starts.
    let argv = parity_args(&data, &out, &["--max-steps", "2", "--warmup-steps", "10"]);
    let output = train_bin(&argv).output().unwrap();
    assert!(stderr(&output).contains("--warmup-steps 10 is longer than the run (2 steps)"), "{}", stderr(&output));
    fs::remove_dir_all(out.join("final")).unwrap();
    let output = train_bin(&[&argv[..], &["--resume".to_string()]].concat()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && !stdout.contains("NaN"), "{stdout}");
    assert!(stdout.contains("trained 2 steps (the last ones in an earlier run)"), "{stdout}");
}
