use crate::{shard, Manifest, Row, Segment, ShardError, MANIFEST_FILE, TOKENIZER_FILE};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// A prepared dataset directory whose manifest has been read and checked.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// All rows of one split, decoded: a flat `rows × seq_len` token block (padded) with each row's
/// true length and document segments.
#[derive(Debug, Clone, Default)]
pub struct SplitRows {
    pub seq_len: u32,
    pub tokens: Vec<u32>,
    pub lengths: Vec<u32>,
    pub segments: Vec<Segment>,
    /// `segments[segment_ends[i-1]..segment_ends[i]]` belong to row `i`.
    pub segment_ends: Vec<usize>,
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
        self.dir.join(TOKENIZER_FILE)
    }

    /// Refuse a `tokenizer.json` other than the one this dataset was tokenized with.
    pub fn check_tokenizer(&self, tokenizer: &Path) -> Result<(), ShardError> {
        let actual = crate::sha256_file(tokenizer).map_err(ShardError::io(tokenizer))?;
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

impl SplitRows {
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Tokens actually held (padding excluded).
    pub fn token_count(&self) -> u64 {
        self.lengths.iter().map(|&l| l as u64).sum()
    }

    /// Row `i` padded to `seq_len`.
    pub fn padded_row(&self, i: usize) -> &[u32] {
        let width = self.seq_len as usize;
        &self.tokens[i * width..(i + 1) * width]
    }

    /// Row `i` without padding.
    pub fn row_tokens(&self, i: usize) -> &[u32] {
        &self.padded_row(i)[..self.lengths[i] as usize]
    }

    pub fn row_segments(&self, i: usize) -> &[Segment] {
        let start = if i == 0 { 0 } else { self.segment_ends[i - 1] };
        &self.segments[start..self.segment_ends[i]]
    }

    pub fn row(&self, i: usize) -> Row {
        Row { tokens: self.row_tokens(i).to_vec(), segments: self.row_segments(i).to_vec() }
    }

    /// Every document's tokens, reassembled from its segments (the pieces of a document longer
    /// than a row joined back together), in order of first appearance: packing order.
    pub fn documents(&self) -> Vec<Vec<u32>> {
        let mut first_seen = Vec::new();
        let mut pieces: BTreeMap<u32, Vec<(u32, Vec<u32>)>> = BTreeMap::new();
        for i in 0..self.len() {
            let row = self.row(i);
            for (segment, range) in row.segment_ranges() {
                let entry = pieces.entry(segment.doc).or_default();
                if entry.is_empty() {
                    first_seen.push(segment.doc);
                }
                entry.push((segment.doc_offset, row.tokens[range].to_vec()));
            }
        }
        first_seen
            .into_iter()
            .map(|doc| {
                let mut parts = pieces.remove(&doc).expect("recorded above");
                parts.sort_by_key(|(offset, _)| *offset);
                parts.into_iter().flat_map(|(_, tokens)| tokens).collect()
            })
            .collect()
    }
}
