use crate::formats::Format;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Every flag of the main `prepare` run. A pipeline file's `[prepare]` table sets the same keys.
#[derive(Debug, Clone, Args, Serialize)]
pub struct PrepareArgs {
    /// The corpus: an http(s) URL (downloaded into --cache-dir) or a local file.
    #[arg(long, value_name = "PATH_OR_URL", required = true)]
    pub source: Option<String>,

    /// Source format; detected from the extension and first bytes when left out.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// sha256 the source file must have (checked after download, or on the local file).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Where downloaded sources are cached.
    #[arg(long, value_name = "DIR", default_value = "data/raw")]
    pub cache_dir: PathBuf,

    /// CSV column holding the joke (default: the column named `Joke`, in any case).
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,

    /// What separates CSV fields: one character, or `tab` (default: a tab for `.tsv` files,
    /// a comma otherwise).
    #[arg(long, value_name = "CHAR", value_parser = delimiter)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,

    /// JSONL field holding the joke.
    #[arg(long, value_name = "NAME", default_value = "text")]
    pub text_field: String,

    /// A tokenizer.json file, a directory holding one, or a Hugging Face Hub model id.
    #[arg(long, value_name = "PATH_OR_ID", default_value = "openai-community/gpt2")]
    pub tokenizer: String,

    /// How each joke becomes training text. `{text}` is the joke; a special token's text
    /// (`<|endoftext|>`) stands for that token (id 50256 for GPT-2), never for its characters.
    #[arg(long, default_value = "JOKE: {text}<|endoftext|>")]
    pub template: String,

    /// Tokens per packed row: the training sequence length (at least 2: each token is trained
    /// to predict the next one in its row).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(2..))]
    pub seq_len: u32,

    /// Output directory, replaced whole once the new one is complete. It must be new, empty, or
    /// an earlier output of prepare: anything else is refused, never overwritten.
    #[arg(long, value_name = "DIR", required = true)]
    pub out: Option<PathBuf>,

    /// Seed of the train/validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Share of jokes held out for validation.
    #[arg(long, value_name = "F", default_value_t = 0.05, value_parser = fraction)]
    pub val_fraction: f64,

    /// Drop jokes shorter than this many characters.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_chars: usize,

    /// Drop jokes longer than this many characters.
    #[arg(long, value_name = "N")]
    pub max_chars: Option<usize>,

    /// Drop jokes with a lower Reddit score (jokes without a score are kept).
    #[arg(long, value_name = "S")]
    pub min_score: Option<f64>,

    /// Drop jokes containing any word or phrase listed in FILE (one per line, `#` comments;
    /// whole words, any case). Example: data/blocklists/example.txt.
    #[arg(long, value_name = "FILE")]
    pub blocklist: Option<PathBuf>,

    /// Uncompressed size of each shard, in MB.
    #[arg(long, value_name = "MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub shard_mb: u64,

    /// Rebuild even when the output is up to date with these inputs.
    #[arg(long)]
    #[serde(skip)]
    pub force: bool,
}

fn delimiter(text: &str) -> Result<char, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok('\t'),
        _ => match text.chars().collect::<Vec<_>>()[..] {
            [c] if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => Ok(c),
            _ => Err(format!("{text:?} is not one ASCII character (or `tab`) other than a quote or a line break")),
        },
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not in [0, 1)"))
    }
}

impl PrepareArgs {
    pub fn source(&self) -> &str {
        self.source.as_deref().expect("clap requires --source")
    }

    pub fn out(&self) -> &std::path::Path {
        self.out.as_deref().expect("clap requires --out")
    }
}
