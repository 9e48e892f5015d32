use crate::options::PrepareArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Turn a joke corpus into packed token shards for the train stage.
///
/// Reads a taivop joke-dataset JSON, a Short Jokes CSV, JSONL or plain text (from a file or an
/// http(s) URL), cleans it, renders each joke through --template, tokenizes, splits train/val
/// by joke, packs whole jokes into rows of at most --seq-len tokens and writes zstd shards with
/// a manifest.json into --out. A run whose inputs match the existing output does nothing.
///
/// Example: prepare --source data/demo/jokes.txt --tokenizer data/tokenizers/gpt2 --seq-len 256 --out data/prepared/mine
#[derive(Debug, Parser)]
#[command(
    name = "prepare",
    version,
    args_override_self = true,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Read flags from the [prepare] table of this pipeline TOML file (keys are the flag names;
    /// flags given on the command line win).
    #[arg(long, value_name = "FILE", global = true)]
    pub pipeline: Option<PathBuf>,

    #[command(flatten)]
    pub args: PrepareArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a prepared dataset's summary, verify every shard, and decode its first rows.
    Inspect {
        dir: PathBuf,
        /// How many train rows to decode.
        #[arg(long, default_value_t = 3)]
        rows: usize,
    },
    /// Write a split as JSONL to stdout: one line per document (--docs) or per row (--rows).
    Dump {
        dir: PathBuf,
        #[arg(long, value_parser = ["train", "val"], default_value = "train")]
        split: String,
        /// `{"text", "tokens"}` per kept document, in packing order.
        #[arg(long, conflicts_with = "rows", required_unless_present = "rows")]
        docs: bool,
        /// `{"tokens", "doc_starts"}` per row, padding left out.
        #[arg(long)]
        rows: bool,
    },
}
