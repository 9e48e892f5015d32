//! The demo pipeline end to end (reduced in size), the way `make pipeline` runs it: each stage
//! parses its table of the pipeline file, and reruns only when its own inputs changed.

use clap::Parser;
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// pipelines/demo.toml with its paths made absolute (outputs in `dir`) and a smaller run.
fn demo_pipeline(dir: &Path) -> toml::Table {
    let root = repository();
    let mut table: toml::Table = fs::read_to_string(root.join("pipelines/demo.toml")).unwrap().parse().unwrap();
    let at = |p: &str| toml::Value::String(dir.join(p).display().to_string());
    let in_repo = |value: &toml::Value| root.join(value.as_str().unwrap()).display().to_string();
    let prepare = table["prepare"].as_table_mut().unwrap();
    for key in ["source", "tokenizer"] {
        let path = in_repo(&prepare[key]);
        prepare.insert(key.into(), path.into());
    }
    prepare.insert("out".into(), at("prepared"));
    let train = table["train"].as_table_mut().unwrap();
    train.insert("data".into(), at("prepared"));
    let config = train["init"].as_str().unwrap().strip_prefix("random:").expect("the demo starts from random weights");
    train.insert("init".into(), format!("random:{}", root.join(config).display()).into());
    train.insert("out".into(), at("run"));
    for (key, value) in [("max_steps", 6), ("eval_every", 3), ("save_every", 3), ("micro_batch", 4)] {
        train.insert(key.into(), value.into());
    }
    let sample = table["sample"].as_table_mut().unwrap();
    sample.insert("model".into(), at("run/final"));
    sample.insert("out".into(), at("samples.jsonl"));
    sample.insert("txt".into(), at("samples.txt"));
    sample.insert("against".into(), at("prepared"));
    sample.insert("num_samples".into(), 2.into());
    sample.insert("max_new_tokens".into(), 8.into());
    table
}

/// Whether each stage (prepare, train, sample) did any work.
fn run_pipeline(file: &Path) -> [bool; 3] {
    let argv = |stage: &str| {
        pipeline::stage_argv(stage, vec![OsString::from(stage), "--pipeline".into(), file.into()]).unwrap()
    };
    let prepare = prepare::build::run(&prepare::cli::Cli::parse_from(argv("prepare")).args).unwrap();
    let train = train::training::train(&train::cli::Cli::parse_from(argv("train")).args).unwrap();
    let sample = sample::run::run(&sample::cli::Cli::parse_from(argv("sample"))).unwrap();
    [!prepare.up_to_date, !train.up_to_date, !sample.up_to_date]
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn the_demo_pipeline_runs_end_to_end_and_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = demo_pipeline(dir.path());
    let file = dir.path().join("demo.toml");
    fs::write(&file, toml::to_string(&table).unwrap()).unwrap();

    assert_eq!(run_pipeline(&file), [true, true, true]);
    let d = dir.path();
    for artifact in [
        "prepared/manifest.json",
        "prepared/tokenizer.json",
        "prepared/train-00000.shard",
        "prepared/val-00000.shard",
        "run/run.json",
        "run/metrics.jsonl",
        "run/checkpoints/step-0000006/state.json",
        "run/final/config.json",
        "run/final/model.safetensors",
        "run/final/tokenizer.json",
        "samples.jsonl",
        "samples.txt",
    ] {
        assert!(d.join(artifact).is_file(), "{artifact} is missing");
    }
    let metrics = train::metrics::read(&d.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.iter().filter(|l| matches!(l, train::metrics::Line::Step(_))).count(), 6);
    let samples = fs::read_to_string(d.join("samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 2);
    for line in samples.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["prompt"], "JOKE:");
        // With --against every record says whether it recites: null (new) or how.
        let recited = record.get("recited").expect("a `recited` field");
        assert!(recited.is_null() || recited.is_string(), "{record}");
    }

    // Nothing changed: no stage does any work, no artifact is rewritten.
    let (metrics_time, samples_time) = (modified(&d.join("run/metrics.jsonl")), modified(&d.join("samples.jsonl")));
    assert_eq!(run_pipeline(&file), [false, false, false]);
    assert_eq!(
        (modified(&d.join("run/metrics.jsonl")), modified(&d.join("samples.jsonl"))),
        (metrics_time, samples_time)
    );

    // A sampling setting changed: only sampling reruns.
    table["sample"].as_table_mut().unwrap().insert("seed".into(), 7.into());
    fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
    assert_eq!(run_pipeline(&file), [false, false, true]);
    assert_eq!(modified(&d.join("run/metrics.jsonl")), metrics_time);

    // The dataset changed: every stage reruns (train replaces its run, as the file asks).
    table["prepare"].as_table_mut().unwrap().insert("val_fraction".into(), 0.1.into());
    fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
    assert_eq!(run_pipeline(&file), [true, true, true]);
}
