//! The main run: source → cleaned jokes → split → tokens → packed rows → shards + manifest.

use crate::{
    clean::{Blocklist, CleanOptions, Cleaner},
    formats::{self, Fields, Format},
    options::PrepareArgs,
    pack::{fill_ratio, pack},
    split::validation_mask,
    template::Template,
    tokenize::TextTokenizer,
};
use anyhow::{bail, Context, Result};
use artifact::{OutputDir, OutputLock, Staging};
use shards::{Counts, Dataset, Manifest, ShardInfo, SourceInfo, SplitInfo, TokenizerInfo, FORMAT_VERSION};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub const SPLITS: [&str; 2] = ["train", "val"];

/// What a run did.
pub struct Outcome {
    pub manifest: Manifest,
    /// The output already matched these inputs; nothing was written.
    pub up_to_date: bool,
}

/// A prepared dataset directory: the manifest, the tokenizer and the shards.
const PREPARED_DIR: OutputDir = OutputDir { stage: "prepare", marker: shards::MANIFEST_FILE, writes: is_prepared_file };

fn is_prepared_file(name: &str) -> bool {
    let is_shard = |split: &str| {
        name.strip_prefix(split).and_then(|rest| rest.strip_prefix('-')).is_some_and(|rest| rest.ends_with(".shard"))
    };
    name == shards::MANIFEST_FILE || name == tokenizer::FILE_NAME || SPLITS.iter().any(|split| is_shard(split))
}

pub fn run(args: &PrepareArgs) -> Result<Outcome> {
    let out = args.out();
    let (source_path, source_sha256) = resolve_source(args)?;
    let format = match args.format {
        Some(format) => format,
        None => Format::detect(&source_path)?,
    };
    let tokenizer = TextTokenizer::load(&args.tokenizer)?;
    let template = Template::parse(&args.template, &tokenizer.special_tokens())?;
    if !template.has_special(tokenizer.eos_id) {
        eprintln!(
            "warning: --template {:?} has no {}: the model will not learn where a joke ends, so samples run on \
             to --max-new-tokens",
            args.template, tokenizer.eos_token
        );
    }
    let (blocklist, blocklist_sha256) = match &args.blocklist {
        Some(path) => (Blocklist::read(path)?, Some(artifact::sha256_file(path)?)),
        None => (Blocklist::default(), None),
    };

    let inputs_hash = inputs_hash(args, &source_sha256, &tokenizer.sha256, blocklist_sha256.as_deref());
    // From here on the output is ours alone: a second prepare on it waits its turn.
    PREPARED_DIR.check_replaceable(out).context("prepare --out")?;
    let _lock = OutputLock::acquire(out, "prepare")?;
    if !args.force {
        if let Some(manifest) = current_output(out, &inputs_hash) {
            return Ok(Outcome { manifest, up_to_date: true });
        }
    }

    let mut cleaner = Cleaner::new(CleanOptions {
        min_chars: args.min_chars,
        max_chars: args.max_chars,
        min_score: args.min_score,
        blocklist,
    });
    let fields = Fields {
        text_column: args.text_column.clone(),
        text_field: args.text_field.clone(),
        delimiter: args.delimiter.map(|c| c as u8),
    };
    let mut texts = Vec::new();
    let source = formats::read(&source_path, format, &fields, &mut |raw| texts.extend(cleaner.accept(raw)))?;
    let records = source.records;
    let mut dropped = cleaner.dropped();
    if let Some(line) = source.first_malformed_line {
        eprintln!(
            "warning: {}: {} records have broken quoting (a quote left open), the first on line {line}: left out; \
             fix the quoting to keep them",
            source_path.display(),
            source.malformed
        );
        // Reading comes before every cleaning step.
        dropped.insert(0, ("malformed".to_string(), source.malformed));
    }
    let dropped_text: Vec<String> = dropped.iter().map(|(reason, n)| format!("{reason} {n}")).collect();
    eprintln!(
        "read {records} records from {} ({}); dropped: {}; kept {} jokes",
        source_path.display(),
        format.name(),
        dropped_text.join(", "),
        texts.len()
    );
    if texts.is_empty() {
        bail!(
            "{}: no jokes left to prepare ({records} records read; dropped: {})",
            source_path.display(),
            dropped_text.join(", ")
        );
    }

    let is_val = validation_mask(&texts, args.seed, args.val_fraction);
    let mut split_texts: [Vec<String>; 2] = Default::default();
    for (text, val) in texts.into_iter().zip(is_val) {
        split_texts[val as usize].push(text);
    }

    let staging = Staging::new(out)?;
    let token_bytes = if tokenizer.vocab_size <= 1 << 16 { 2 } else { 4 };
    let seq_len = args.seq_len as usize;
    let rows_per_shard = ((args.shard_mb << 20) / (seq_len as u64 * token_bytes as u64)).max(1) as usize;
    let mut splits = BTreeMap::new();
    for (name, texts) in SPLITS.iter().zip(split_texts) {
        let documents = tokenizer.encode_all(&template, &texts, name)?;
        drop(texts);
        let packed = pack(&documents, seq_len);
        let mut shards = Vec::new();
        for (index, rows) in packed.rows.chunks(rows_per_shard).enumerate() {
            let file = format!("{name}-{index:05}.shard");
            let sha256 =
                shards::shard::write(&staging.path().join(&file), rows, args.seq_len, token_bytes, tokenizer.eos_id)?;
            let tokens = rows.iter().map(|r| r.tokens.len() as u64).sum();
            shards.push(ShardInfo { file, sha256, rows: rows.len() as u64, tokens });
        }
        splits.insert(
            name.to_string(),
            SplitInfo {
                documents: documents.len() as u64,
                split_documents: packed.split_documents,
                rows: packed.rows.len() as u64,
                tokens: documents.iter().map(|d| d.len() as u64).sum(),
                fill: fill_ratio(&packed.rows, seq_len),
                shards,
            },
        );
    }
    std::fs::copy(&tokenizer.path, staging.path().join(tokenizer::FILE_NAME))
        .with_context(|| format!("copying {}", tokenizer.path.display()))?;

    let (rows, tokens) = splits.values().fold((0, 0), |(r, t), s| (r + s.rows, t + s.tokens));
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        tokenizer: TokenizerInfo {
            source: tokenizer.source.clone(),
            sha256: tokenizer.sha256.clone(),
            vocab_size: tokenizer.vocab_size,
            eos_token: tokenizer.eos_token.clone(),
            eos_id: tokenizer.eos_id,
        },
        template: args.template.clone(),
        seq_len: args.seq_len,
        token_bytes,
        source: SourceInfo {
            location: args.source().to_string(),
            path: source_path.display().to_string(),
            sha256: source_sha256,
            bytes: std::fs::metadata(&source_path)?.len(),
            format: format.name().to_string(),
        },
        counts: Counts {
            source_records: records,
            first_malformed_line: source.first_malformed_line,
            dropped,
            documents: splits.values().map(|s| s.documents).sum(),
            rows,
            tokens,
            fill: tokens as f64 / (rows * args.seq_len as u64) as f64,
        },
        splits,
        args: serde_json::to_value(args)?,
        inputs_hash,
        lineage: String::new(),
    };
    manifest.seal();
    // The manifest goes in last: a staging directory without one was never finished.
    let manifest_path = staging.path().join(shards::MANIFEST_FILE);
    std::fs::write(&manifest_path, manifest.to_json_pretty())
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    staging.commit()?;
    Ok(Outcome { manifest, up_to_date: false })
}

/// The local file to read (downloading a URL first) and its sha256, checked against --sha256.
fn resolve_source(args: &PrepareArgs) -> Result<(PathBuf, String)> {
    let source = args.source();
    let path = if source.starts_with("http://") || source.starts_with("https://") {
        fetch::Downloader::default().fetch(source, &args.cache_dir, args.sha256.as_deref())?
    } else {
        let path = PathBuf::from(source);
        if !path.is_file() {
            bail!("source {source}: no such file");
        }
        path
    };
    let sha256 = artifact::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(expected) = &args.sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            bail!("source {}: sha256 is {sha256}, --sha256 expects {expected}", path.display());
        }
    }
    Ok((path, sha256))
}

/// Everything that determines the output: equal hashes, equal datasets.
fn inputs_hash(
    args: &PrepareArgs,
    source_sha256: &str,
    tokenizer_sha256: &str,
    blocklist_sha256: Option<&str>,
) -> String {
    let mut args = serde_json::to_value(args).expect("arguments serialise");
    for not_an_input in ["out", "cache_dir"] {
        args.as_object_mut().expect("arguments are an object").remove(not_an_input);
    }
    let inputs = serde_json::json!({
        "format_version": FORMAT_VERSION,
        "prepare_version": env!("CARGO_PKG_VERSION"),
        "args": args,
        "source_sha256": source_sha256,
        "tokenizer_sha256": tokenizer_sha256,
        "blocklist_sha256": blocklist_sha256,
    });
    artifact::sha256_bytes(&serde_json::to_vec(&inputs).expect("inputs serialise"))
}

/// The output's manifest, when the output exists, is intact, and came from the same inputs.
fn current_output(out: &Path, inputs_hash: &str) -> Option<Manifest> {
    let dataset = Dataset::open(out).ok()?;
    if dataset.manifest.inputs_hash != inputs_hash {
        return None;
    }
    for split in dataset.manifest.splits.keys() {
        dataset.read_split(split).ok()?;
    }
    Some(dataset.manifest)
}
