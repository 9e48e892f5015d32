//! prepare replaces only its own output: never a directory or file of the user's, never one
//! another prepare is writing.

mod common;

use std::{fs, path::Path};

fn prepare(source: &Path, out: &Path, extra: &[&str]) -> anyhow::Result<prepare::build::Outcome> {
    prepare::build::run(&common::args(source, out, &[&["--seq-len", "64"], extra].concat()))
}

#[test]
fn a_directory_of_the_user_s_files_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // `--out data`, where data/ holds the user's runs; and the source's own directory.
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("runs/mine")).unwrap();
    fs::write(data.join("runs/mine/run.json"), "{}").unwrap();
    let source = dir.path().join("myjokes/jokes.txt");
    fs::create_dir(source.parent().unwrap()).unwrap();
    common::write_text_corpus(&source, 30);
    for out in [data.as_path(), source.parent().unwrap()] {
        let error = format!("{:#}", prepare(&source, out, &[]).err().expect("refused"));
        assert!(error.contains("prepare --out") && error.contains("is not an output of prepare"), "{error}");
    }
    assert!(data.join("runs/mine/run.json").is_file());
    assert!(source.is_file());
}

#[test]
fn a_file_is_refused_and_kept_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.txt");
    common::write_text_corpus(&source, 30);
    let out = dir.path().join("notes.txt");
    fs::write(&out, "mine").unwrap();
    let error = format!("{:#}", prepare(&source, &out, &[]).err().expect("refused"));
    assert!(error.contains("is a file"), "{error}");
    assert_eq!(fs::read_to_string(&out).unwrap(), "mine");
}

#[test]
fn an_earlier_output_is_replaced_but_not_with_the_user_s_files_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.txt");
    common::write_text_corpus(&source, 30);
    let out = dir.path().join("out");
    prepare(&source, &out, &[]).unwrap();
    prepare(&source, &out, &["--force"]).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let error = format!("{:#}", prepare(&source, &out, &["--force"]).err().expect("refused"));
    assert!(error.contains("holds notes.txt besides what prepare wrote"), "{error}");
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}

#[test]
fn an_output_another_prepare_is_writing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.txt");
    common::write_text_corpus(&source, 30);
    let out = dir.path().join("out");
    let _other = artifact::OutputLock::acquire(&out, "prepare").unwrap();
    let error = format!("{:#}", prepare(&source, &out, &[]).err().expect("refused"));
    assert!(error.contains("is being written by prepare (pid"), "{error}");
    assert!(!out.exists());
}

#[test]
fn rows_of_one_token_are_refused() {
    use clap::Parser;
    let error = prepare::cli::Cli::try_parse_from(["prepare", "--source", "a.txt", "--out", "o", "--seq-len", "1"])
        .unwrap_err();
    assert!(error.to_string().contains("--seq-len"), "{error}");
}
