//! Whether a prepared dataset fits a model: ids inside its vocabulary, rows inside its
//! positions, and (when the model carries a tokenizer) the same tokenizer.

use anyhow::{anyhow, bail, Result};
use gpt2::Gpt2Config;
use shards::Dataset;
use std::path::Path;

pub fn check(dataset: &Dataset, config: &Gpt2Config, model: &str, model_dir: Option<&Path>) -> Result<()> {
    let tokenizer = &dataset.manifest.tokenizer;
    let data = dataset.dir.display();
    if tokenizer.vocab_size as usize > config.vocab_size {
        bail!(
            "{data} was tokenized with {} ({} tokens), more than the model {model} has ({}): they do not belong together",
            tokenizer.source,
            tokenizer.vocab_size,
            config.vocab_size
        );
    }
    if dataset.manifest.seq_len as usize > config.n_positions {
        bail!(
            "{data} has rows of up to {} tokens but the model {model} has {} positions: prepare it again with --seq-len {}",
            dataset.manifest.seq_len,
            config.n_positions,
            config.n_positions
        );
    }
    let Some(model_tokenizer) = model_dir.map(|d| d.join(gpt2::hf::TOKENIZER_FILE)).filter(|p| p.is_file()) else {
        return Ok(());
    };
    let load = |path: &Path| {
        tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))
    };
    let (ours, theirs) = (load(&dataset.tokenizer_path())?, load(&model_tokenizer)?);
    if ours.get_vocab(true) != theirs.get_vocab(true) {
        bail!(
            "{data} was tokenized with {} but the model {model} comes with a different tokenizer ({}): token ids would mean other words; prepare the data with the model's tokenizer",
            tokenizer.source,
            model_tokenizer.display()
        );
    }
    Ok(())
}
