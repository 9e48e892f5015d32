//! `prepare inspect` and `prepare dump`: reading a prepared dataset back as text.

use crate::tokenize::TextTokenizer;
use anyhow::Result;
use serde_json::json;
use shards::Dataset;
use std::{io::Write, path::Path};

/// Open a dataset with its tokenizer, refusing a tokenizer.json that is not the one recorded.
fn open(dir: &Path) -> Result<(Dataset, TextTokenizer)> {
    let dataset = Dataset::open(dir)?;
    dataset.check_tokenizer(&dataset.tokenizer_path())?;
    let tokenizer = TextTokenizer::load(&dataset.tokenizer_path().display().to_string())?;
    Ok((dataset, tokenizer))
}

/// Summary of the manifest, every shard verified, and the first `rows` train rows decoded with
/// `¦` at each document boundary.
pub fn inspect(dir: &Path, rows: usize, out: &mut impl Write) -> Result<()> {
    let (dataset, tokenizer) = open(dir)?;
    let m = &dataset.manifest;
    writeln!(out, "dataset    {}", dir.display())?;
    writeln!(
        out,
        "source     {} ({}, {} bytes, sha256 {})",
        m.source.location, m.source.format, m.source.bytes, m.source.sha256
    )?;
    writeln!(
        out,
        "tokenizer  {} (vocab {}, eos {} = {})",
        m.tokenizer.source, m.tokenizer.vocab_size, m.tokenizer.eos_token, m.tokenizer.eos_id
    )?;
    writeln!(out, "template   {:?}", m.template)?;
    writeln!(out, "seq_len    {} ({}-byte tokens)", m.seq_len, m.token_bytes)?;
    let dropped: Vec<String> = m.counts.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
    writeln!(out, "records    {} read; dropped {}", m.counts.source_records, dropped.join(", "))?;
    writeln!(out, "lineage    {}", m.lineage)?;
    let mut first_train = None;
    for (name, info) in &m.splits {
        let split = dataset.read_split(name)?;
        writeln!(
            out,
            "{name:<10} {} jokes ({} longer than a row), {} rows, {} tokens, fill {:.2}%, {} shard(s) verified",
            info.documents,
            info.split_documents,
            info.rows,
            info.tokens,
            info.fill * 100.0,
            info.shards.len()
        )?;
        if name == "train" {
            first_train = Some(split);
        }
    }
    if let Some(split) = first_train {
        for i in 0..rows.min(split.len()) {
            let row = split.row(i);
            let pieces: Result<Vec<String>> =
                row.segment_ranges().map(|(_, range)| tokenizer.decode(&row.tokens[range])).collect();
            writeln!(
                out,
                "\n--- train row {i}: {} tokens, {} segment(s)",
                split.lengths[i],
                split.row_segments(i).len()
            )?;
            writeln!(out, "{}", pieces?.join("¦"))?;
        }
    }
    Ok(())
}

/// One JSONL line per row: its tokens (no padding) and document start offsets.
pub fn dump_rows(dir: &Path, split: &str, out: &mut impl Write) -> Result<()> {
    let rows = Dataset::open(dir)?.read_split(split)?;
    for i in 0..rows.len() {
        let row = rows.row(i);
        writeln!(out, "{}", json!({ "tokens": row.tokens, "doc_starts": row.doc_starts() }))?;
    }
    Ok(())
}

/// One JSONL line per document in packing order: the templated text and its tokens, with the
/// pieces of documents longer than a row joined back together.
pub fn dump_docs(dir: &Path, split: &str, out: &mut impl Write) -> Result<()> {
    let (dataset, tokenizer) = open(dir)?;
    let rows = dataset.read_split(split)?;
    for tokens in rows.documents() {
        writeln!(out, "{}", json!({ "text": tokenizer.decode(&tokens)?, "tokens": tokens }))?;
    }
    Ok(())
}
