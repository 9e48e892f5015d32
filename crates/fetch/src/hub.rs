use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What a name given for a model or tokenizer refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    /// Something on this machine (which may not exist: the caller says what is missing).
    Local(&'a Path),
    /// A Hugging Face Hub repository id.
    Hub(&'a str),
}

/// `name` as a local path when one exists there or it cannot be a Hub id, else as a Hub id:
/// a directory called `gpt2` beside the user wins over the Hub's `gpt2`.
pub fn local_or_hub(name: &str) -> Named<'_> {
    let path = Path::new(name);
    if path.exists() || !looks_like_hub_id(name) {
        Named::Local(path)
    } else {
        Named::Hub(name)
    }
}

/// Whether `name` reads as a Hub repository id (`owner/name` or a bare legacy id such as
/// `gpt2`) rather than a local path.
pub fn looks_like_hub_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// A file of a Hugging Face Hub model repository (revision `main`), from the cache shared with
/// the Hub's own clients (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`) or downloaded
/// into it. Set `HF_HUB_OFFLINE=1` to never touch the network.
pub fn hub_file(repo_id: &str, filename: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if let Some(path) = cache.model(repo_id.to_string()).get(filename) {
        return Ok(path);
    }
    let cache_dir = cache.path().display().to_string();
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let error = if offline {
        "HF_HUB_OFFLINE is set".to_string()
    } else {
        let api = hf_hub::api::sync::ApiBuilder::from_env().with_progress(true).build()?;
        match api.model(repo_id.to_string()).get(filename) {
            Ok(path) => return Ok(path),
            Err(error) => error.to_string(),
        }
    };
    bail!(
        "could not get {filename} of {repo_id} from the Hugging Face Hub ({error}).\n\
         On a machine that is online, run `huggingface-cli download {repo_id} {filename}` and copy its\n\
         cache ({cache_dir}) here, or download the file and pass its local path instead of `{repo_id}`."
    )
}
