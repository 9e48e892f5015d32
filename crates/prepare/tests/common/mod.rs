#![allow(dead_code)] // each test binary uses its own subset

use clap::Parser;
use prepare::{cli::Cli, options::PrepareArgs};
use std::path::{Path, PathBuf};

/// The GPT-2 tokenizer committed with the project.
pub fn gpt2_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizers/gpt2/tokenizer.json")
}

/// Arguments as the command line would give them, with the project's tokenizer.
pub fn args(source: &Path, out: &Path, extra: &[&str]) -> PrepareArgs {
    let mut argv = vec![
        "prepare".to_string(),
        format!("--source={}", source.display()),
        format!("--out={}", out.display()),
        format!("--tokenizer={}", gpt2_tokenizer().display()),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::try_parse_from(argv).expect("valid arguments").args
}

/// A small corpus of distinct jokes of varied length, one per blank-line-separated block.
pub fn write_text_corpus(path: &Path, jokes: usize) {
    let mut text = String::new();
    for i in 0..jokes {
        let words = 3 + (i * 37) % 90;
        let body: Vec<String> = (0..words).map(|w| format!("w{}", (i * 7 + w * 13) % 101)).collect();
        text.push_str(&format!("Joke {i}: {}\n\n", body.join(" ")));
    }
    std::fs::write(path, text).unwrap();
}
