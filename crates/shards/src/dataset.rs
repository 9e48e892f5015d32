use crate::{shard, Manifest, ShardError, SplitRows, MANIFEST_FILE};
use std::path::{Path, PathBuf};

/// A prepared dataset directory whose manifest has been read and checked.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Dataset {
    /// Open `dir` and check its manifest (format version, lineage). Shards are checked when read.
    pub fn open(dir: &Path) -> Result<Self, ShardError> {
        if !dir.is_dir() {
            return Err(ShardError::Io {
                path: dir.into(),
                error: std::io::Error::new(std::io::ErrorKind::NotFound, "no prepared dataset directory here"),
            });
        }
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(ShardError::Io {
                path: dir.into(),
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a prepared dataset (no manifest.json; the prepare stage writes one into its --out)",
                ),
            });
        }
        let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
        Ok(Self { dir: dir.into(), manifest })
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(tokenizer::FILE_NAME)
    }

    /// Refuse a `tokenizer.json` other than the one this dataset was tokenized with.
    pub fn check_tokenizer(&self, tokenizer: &Path) -> Result<(), ShardError> {
        let actual = artifact::sha256_file(tokenizer).map_err(ShardError::io(tokenizer))?;
        if actual != self.manifest.tokenizer.sha256 {
            return Err(ShardError::TokenizerMismatch {
                dataset: self.dir.clone(),
                recorded_source: self.manifest.tokenizer.source.clone(),
                recorded: self.manifest.tokenizer.sha256.clone(),
                tokenizer: tokenizer.into(),
                actual,
            });
        }
        Ok(())
    }

    /// Read every shard of `split`, verifying checksums, layout, counts and token ids.
    pub fn read_split(&self, split: &str) -> Result<SplitRows, ShardError> {
        let info = self.manifest.splits.get(split).ok_or_else(|| ShardError::NoSplit {
            path: self.dir.join(MANIFEST_FILE),
            split: split.into(),
            present: self.manifest.splits.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let mut rows = SplitRows { seq_len: self.manifest.seq_len, ..Default::default() };
        for shard_info in &info.shards {
            let path = self.dir.join(&shard_info.file);
            let rows_before = rows.len();
            let tokens_before = rows.token_count();
            shard::read_into(&path, &shard_info.sha256, &mut rows)?;
            let (read_rows, read_tokens) = (rows.len() - rows_before, rows.token_count() - tokens_before);
            if read_rows as u64 != shard_info.rows || read_tokens != shard_info.tokens {
                return Err(ShardError::Corrupt {
                    path,
                    reason: format!(
                        "holds {read_rows} rows / {read_tokens} tokens, the manifest says {} / {}",
                        shard_info.rows, shard_info.tokens
                    ),
                });
            }
        }
        let vocab_size = self.manifest.tokenizer.vocab_size;
        if let Some(bad) = (0..rows.len()).flat_map(|i| rows.row_tokens(i)).find(|&&t| t >= vocab_size) {
            return Err(ShardError::Corrupt {
                path: self.dir.clone(),
                reason: format!("token id {bad} is outside the tokenizer's vocabulary of {vocab_size}"),
            });
        }
        Ok(rows)
    }
}
