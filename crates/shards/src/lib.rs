//! The on-disk contract between `prepare` and `train`: packed token rows in zstd-compressed
//! shards, described and checksummed by a `manifest.json`.
//!
//! A prepared dataset directory holds:
//! - `manifest.json` ([`Manifest`]): what was tokenized, how, and every shard's sha256;
//! - `tokenizer.json`: the tokenizer that produced the ids;
//! - `{split}-{index:05}.shard` ([`shard`]): rows of `seq_len` token ids with their true
//!   lengths and the document segments inside each row.

mod dataset;
mod error;
mod manifest;
mod row;
pub mod shard;

pub use artifact::{sha256_bytes, sha256_file};
pub use dataset::{Dataset, SplitRows};
pub use error::ShardError;
pub use manifest::{Counts, Manifest, ShardInfo, SourceInfo, SplitInfo, TokenizerInfo, FORMAT_VERSION};
pub use row::{Row, Segment};

/// File name of the manifest inside a prepared dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the tokenizer copy inside a prepared dataset directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
