//! The Hugging Face `tokenizer.json` every stage reads: prepare tokenizes with it and copies it
//! beside the shards, train checks it against the model and saves it with the model, sample
//! decodes with it. What the stages need to agree on lives here once.

use anyhow::{anyhow, bail, Result};
use fetch::Named;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The tokenizer's file name, in a model directory, a Hub repository and a prepared dataset.
pub const FILE_NAME: &str = "tokenizer.json";

/// GPT-2's end-of-text token, which ends each joke.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The `tokenizer.json` that `spec` names: the file itself, a directory holding one, or a
/// Hugging Face Hub model id (its file is downloaded into the Hub cache).
pub fn locate(spec: &str) -> Result<PathBuf> {
    let path = match fetch::local_or_hub(spec) {
        Named::Local(dir) if dir.is_dir() => dir.join(FILE_NAME),
        Named::Local(file) => file.to_path_buf(),
        Named::Hub(repo) => fetch::hub_file(repo, FILE_NAME)?,
    };
    if !path.is_file() {
        bail!("tokenizer {}: no such file (give a {FILE_NAME}, a directory holding one, or a Hub id)", path.display());
    }
    Ok(path)
}

/// The tokenizer in `bytes`, read from `path` (named in the error when they are not one).
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_bytes(bytes).map_err(|e| anyhow!("{}: not a valid {FILE_NAME}: {e}", path.display()))
}

/// The tokenizer in the file at `path`.
pub fn load(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    from_bytes(&bytes, path)
}

/// Whether `ours`, read from `path` (`described` to the user, e.g. "the tokenizer of DATA"),
/// belongs with the model `model` of `model_vocab` tokens: its ids must lie inside the model's
/// vocabulary, and where the model's directory `model_dir` carries a tokenizer of its own, the
/// two must map the same words to the same ids.
pub fn check_fits_model(
    ours: &Tokenizer,
    path: &Path,
    described: &str,
    model: &str,
    model_vocab: usize,
    model_dir: Option<&Path>,
) -> Result<()> {
    let vocab = ours.get_vocab_size(true);
    if vocab > model_vocab {
        bail!(
            "{described} has {vocab} tokens, more than the model {model} has ({model_vocab}): they do not belong together"
        );
    }
    let Some(model_tokenizer) = model_dir.map(|dir| dir.join(FILE_NAME)).filter(|p| p.is_file()) else {
        return Ok(());
    };
    if model_tokenizer == path || ours.get_vocab(true) == load(&model_tokenizer)?.get_vocab(true) {
        return Ok(());
    }
    bail!(
        "the model {model} comes with a different tokenizer ({}) than {described}: token ids would mean other \
         words; use the model's tokenizer",
        model_tokenizer.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A word-level tokenizer of `words`, as a `tokenizer.json`.
    fn write_tokenizer(dir: &Path, words: &[&str]) -> PathBuf {
        let vocab: Vec<String> = words.iter().enumerate().map(|(id, word)| format!("\"{word}\": {id}")).collect();
        let json = format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {{"type": "Whitespace"}}, "post_processor": null, "decoder": null,
            "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "{}"}}}}"#,
            vocab.join(", "),
            words[0]
        );
        fs::create_dir_all(dir).unwrap();
        let path = dir.join(FILE_NAME);
        fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn locates_a_file_a_directory_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tokenizer(dir.path(), &["<unk>", "a"]);
        assert_eq!(locate(dir.path().to_str().unwrap()).unwrap(), path);
        assert_eq!(locate(path.to_str().unwrap()).unwrap(), path);
        let missing = dir.path().join("nothing/here.json");
        let error = locate(missing.to_str().unwrap()).unwrap_err().to_string();
        assert!(error.contains("no such file") && error.contains("here.json"), "{error}");
        fs::write(dir.path().join("bad.json"), "{}").unwrap();
        let error = load(&dir.path().join("bad.json")).unwrap_err().to_string();
        assert!(error.contains("bad.json: not a valid tokenizer.json"), "{error}");
    }

    #[test]
    fn a_tokenizer_fits_a_model_of_its_size_and_vocabulary_only() {
        let dir = tempfile::tempdir().unwrap();
        let ours = write_tokenizer(&dir.path().join("data"), &["<unk>", "a", "b"]);
        let same = dir.path().join("same");
        write_tokenizer(&same, &["<unk>", "a", "b"]);
        let other = dir.path().join("other");
        write_tokenizer(&other, &["<unk>", "b", "a"]);

        let tokenizer = load(&ours).unwrap();
        let check = |model_vocab, model_dir| check_fits_model(&tokenizer, &ours, "ours", "m", model_vocab, model_dir);
        check(3, None).unwrap();
        check(3, Some(&same)).unwrap();
        check(3, Some(dir.path())).unwrap(); // the model has none
        let error = check(2, None).unwrap_err().to_string();
        assert!(error.contains("ours has 3 tokens, more than the model m has (2)"), "{error}");
        let error = check(3, Some(&other)).unwrap_err().to_string();
        assert!(error.contains("comes with a different tokenizer") && error.contains("than ours"), "{error}");
    }
}
