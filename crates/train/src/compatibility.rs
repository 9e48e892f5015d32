//! Whether a prepared dataset fits a model: ids inside its vocabulary, rows inside its
//! positions, and (when the model carries a tokenizer) the same tokenizer.

use anyhow::{bail, Result};
use gpt2::Gpt2Config;
use shards::Dataset;
use std::path::Path;

pub fn check(dataset: &Dataset, config: &Gpt2Config, model: &str, model_dir: Option<&Path>) -> Result<()> {
    let data = dataset.dir.display();
    if dataset.manifest.seq_len as usize > config.n_positions {
        bail!(
            "{data} has rows of up to {} tokens but the model {model} has {} positions: prepare it again with --seq-len {}",
            dataset.manifest.seq_len,
            config.n_positions,
            config.n_positions
        );
    }
    let described = format!("the tokenizer {data} was prepared with ({})", dataset.manifest.tokenizer.source);
    let path = dataset.tokenizer_path();
    tokenizer::check_fits_model(&tokenizer::load(&path)?, &path, &described, model, config.vocab_size, model_dir)
}
