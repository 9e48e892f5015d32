use crate::ShardError;
use artifact::sha256_bytes;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

/// Version of the dataset layout (manifest fields and shard encoding) this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `manifest.json`: everything needed to trust, reproduce and consume a prepared dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tokenizer: TokenizerInfo,
    /// The template each document was rendered through, e.g. `JOKE: {text}<|endoftext|>`.
    pub template: String,
    pub seq_len: u32,
    /// Bytes per stored token id: 2 while the vocabulary fits in u16, else 4.
    pub token_bytes: u32,
    pub source: SourceInfo,
    pub counts: Counts,
    /// `train` and `val`.
    pub splits: BTreeMap<String, SplitInfo>,
    /// Every argument of the run that wrote this dataset.
    pub args: serde_json::Value,
    /// Hash of what determines the output (arguments, source and tokenizer bytes, format
    /// version): equal hashes mean a rerun would write the same dataset.
    pub inputs_hash: String,
    /// sha256 over this manifest with `lineage` empty. Later stages record it.
    pub lineage: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenizerInfo {
    /// The path or Hugging Face Hub id the tokenizer came from.
    pub source: String,
    /// sha256 of the `tokenizer.json` bytes (the copy beside the manifest).
    pub sha256: String,
    pub vocab_size: u32,
    pub eos_token: String,
    pub eos_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceInfo {
    /// The URL or path given to `--source`.
    pub location: String,
    /// The local file that was read (the download cache for URLs).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub source_records: u64,
    /// Records dropped by each cleaning step, in the order the steps ran (`malformed`: records
    /// that could not be read as written).
    pub dropped: Vec<(String, u64)>,
    /// The source line where the first malformed record starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_malformed_line: Option<u64>,
    pub documents: u64,
    pub rows: u64,
    pub tokens: u64,
    /// Tokens over row capacity (rows × seq_len), across both splits.
    pub fill: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SplitInfo {
    pub documents: u64,
    /// Documents longer than a row, stored as several consecutive pieces.
    pub split_documents: u64,
    pub rows: u64,
    pub tokens: u64,
    pub fill: f64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// File name relative to the dataset directory.
    pub file: String,
    pub sha256: String,
    pub rows: u64,
    pub tokens: u64,
}

impl Manifest {
    /// The hash that `lineage` must hold: sha256 of the manifest serialised with `lineage` empty.
    pub fn compute_lineage(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.lineage.clear();
        sha256_bytes(&serde_json::to_vec(&unsealed).expect("manifest serialises"))
    }

    /// Fill in `lineage`; call last, after every other field is final.
    pub fn seal(&mut self) {
        self.lineage = self.compute_lineage();
    }

    /// Read and check a manifest: parseable, the right format version, lineage intact.
    pub fn read(path: &Path) -> Result<Self, ShardError> {
        let bytes = std::fs::read(path).map_err(ShardError::io(path))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|error| ShardError::Manifest { path: path.into(), error })?;
        let found = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(ShardError::Version { path: path.into(), found, expected: FORMAT_VERSION });
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|error| ShardError::Manifest { path: path.into(), error })?;
        let actual = manifest.compute_lineage();
        if actual != manifest.lineage {
            return Err(ShardError::Lineage { path: path.into(), expected: manifest.lineage, actual });
        }
        let invalid = |reason: String| Err(ShardError::Invalid { path: path.into(), reason });
        let tokenizer = &manifest.tokenizer;
        if tokenizer.eos_id >= tokenizer.vocab_size {
            return invalid(format!(
                "eos_id {} is outside the tokenizer's {} tokens",
                tokenizer.eos_id, tokenizer.vocab_size
            ));
        }
        if manifest.seq_len < 2 {
            return invalid(format!("seq_len {} leaves no token to predict (at least 2)", manifest.seq_len));
        }
        if ![2, 4].contains(&manifest.token_bytes) {
            return invalid(format!("token_bytes {} is neither 2 nor 4", manifest.token_bytes));
        }
        Ok(manifest)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifest serialises")
    }
}
