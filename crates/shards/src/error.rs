use std::path::PathBuf;

/// Everything that can be wrong with a prepared dataset, each naming the file at fault. The
/// underlying errors are part of each message, not error sources: a chain printed with `{:#}`
/// would say them twice.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a valid manifest: {error}")]
    Manifest { path: PathBuf, error: serde_json::Error },
    #[error("{path}: {reason}: rerun the prepare stage")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: dataset format version {found}, this build reads version {expected}; \
         rerun the prepare stage with this build"
    )]
    Version { path: PathBuf, found: u32, expected: u32 },
    #[error(
        "{path}: checksum mismatch (manifest says {expected}, file has {actual}); \
         the shard is corrupt or was changed: rerun the prepare stage"
    )]
    Checksum { path: PathBuf, expected: String, actual: String },
    #[error("{path}: corrupt shard: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: lineage hash {actual} does not match the recorded {expected}: the manifest was edited")]
    Lineage { path: PathBuf, expected: String, actual: String },
    #[error(
        "{dataset} was tokenized with {recorded_source} (sha256 {recorded}), not with {tokenizer} \
         (sha256 {actual}): token ids would not mean the same words"
    )]
    TokenizerMismatch {
        dataset: PathBuf,
        recorded_source: String,
        recorded: String,
        tokenizer: PathBuf,
        actual: String,
    },
    #[error("{path}: no split named '{split}' (present: {present})")]
    NoSplit { path: PathBuf, split: String, present: String },
}

impl ShardError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| ShardError::Io { path, error }
    }
}
