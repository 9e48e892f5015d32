//! A model named on the command line: a local directory in the Hugging Face layout, or a Hub
//! id whose files come through the cache shared with the Hub's own clients.

use anyhow::{bail, Result};
use fetch::Named;
use gpt2::hf::{self, CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use std::path::PathBuf;

/// The local directory of a model directory or Hub id, downloading a Hub model's files
/// (config, weights, and its tokenizer where it has one) into the Hub cache when they are not
/// there yet.
pub fn locate(spec: &str) -> Result<PathBuf> {
    let spec = match fetch::local_or_hub(spec) {
        Named::Local(dir) if dir.is_dir() => return Ok(dir.to_path_buf()),
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
