//! The `prepare` binary as a user meets it: help, pipeline files, inspect and dump, exit codes.

mod common;

use std::{fs, process::Command};

fn prepare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prepare"))
}

#[test]
fn help_names_every_flag() {
    let output = prepare().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--source",
        "--format",
        "--sha256",
        "--cache-dir",
        "--text-column",
        "--text-field",
        "--tokenizer",
        "--template",
        "--seq-len",
        "--out",
        "--seed",
        "--val-fraction",
        "--min-chars",
        "--max-chars",
        "--min-score",
        "--blocklist",
        "--shard-mb",
        "--force",
        "--pipeline",
        "inspect",
        "dump",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[test]
fn pipeline_file_drives_a_run_and_inspect_and_dump_read_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.txt");
    common::write_text_corpus(&source, 40);
    let out = dir.path().join("out");
    let pipeline = dir.path().join("p.toml");
    fs::write(
        &pipeline,
        format!(
            "[prepare]\nsource = {:?}\ntokenizer = {:?}\nseq_len = 128\nout = {:?}\nval_fraction = 0.25\n\n[train]\nlr = 1e-4\n",
            source.display().to_string(),
            common::gpt2_tokenizer().display().to_string(),
            out.display().to_string()
        ),
    )
    .unwrap();
    let run = prepare().arg("--pipeline").arg(&pipeline).arg("--seq-len=96").output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let manifest = shards::Dataset::open(&out).unwrap().manifest;
    assert_eq!(manifest.seq_len, 96, "the command line wins over the pipeline file");
    assert_eq!(manifest.splits["val"].documents, 10);

    let inspect = prepare().args(["inspect", "--rows", "1"]).arg(&out).output().unwrap();
    assert!(inspect.status.success());
    let text = String::from_utf8(inspect.stdout).unwrap();
    assert!(text.contains("train row 0") && text.contains("JOKE: Joke"), "{text}");

    let dump = prepare().args(["dump", "--split", "val", "--rows"]).arg(&out).output().unwrap();
    assert!(dump.status.success());
    let rows: Vec<serde_json::Value> =
        String::from_utf8(dump.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len() as u64, manifest.splits["val"].rows);
    assert!(rows.iter().all(|r| r["doc_starts"][0] == 0 && r["tokens"].as_array().unwrap().len() <= 96));
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let output = prepare().args(["--source", "/no/such/jokes.json", "--out", "/tmp/never-written"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("/no/such/jokes.json"), "{stderr}");

    let output = prepare().args(["--pipeline", "/no/such/pipeline.toml"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr).unwrap().contains("/no/such/pipeline.toml"));

    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    fs::write(&pipeline, "[prepare]\nno_such_flag = 3\n").unwrap();
    let output = prepare().arg("--pipeline").arg(&pipeline).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr).unwrap().contains("--no-such-flag"));
}

#[test]
fn a_template_without_the_end_of_text_token_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.txt");
    common::write_text_corpus(&source, 20);
    let output = prepare()
        .arg("--source")
        .arg(&source)
        .arg("--tokenizer")
        .arg(common::gpt2_tokenizer())
        .args(["--seq-len", "64", "--template", "JOKE: {text}"])
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("has no <|endoftext|>"), "{stderr}");
}
