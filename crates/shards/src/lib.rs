//! The on-disk contract between `prepare` and `train`: packed token rows in zstd-compressed
//! shards, described and checksummed by a `manifest.json`.
//!
//! A prepared dataset directory holds:
//! - `manifest.json` ([`Manifest`]): what was tokenized, how, and every shard's sha256;
//! - `tokenizer.json` ([`tokenizer::FILE_NAME`]): the tokenizer that produced the ids;
//! - `{split}-{index:05}.shard` ([`shard`]): rows of `seq_len` token ids with their true
//!   lengths and the document segments inside each row.

mod dataset;
mod error;
mod manifest;
mod row;
pub mod shard;
mod split_rows;

pub use dataset::Dataset;
pub use error::ShardError;
pub use manifest::{Counts, Manifest, ShardInfo, SourceInfo, SplitInfo, TokenizerInfo, FORMAT_VERSION};
pub use row::{Row, Segment};
pub use split_rows::SplitRows;

/// File name of the manifest inside a prepared dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
