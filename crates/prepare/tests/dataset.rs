//! The prepare run end to end on a project-written corpus: packing invariants, split, shards,
//! corruption detection, up-to-date checks and atomic output.

mod common;

use prepare::{build, inspect, pack, template::Template, tokenize::TextTokenizer};
use shards::{Dataset, ShardError};
use std::{collections::HashSet, fs, path::Path};

const SEQ_LEN: usize = 64;

fn prepared(dir: &Path, jokes: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let source = dir.join("corpus.txt");
    common::write_text_corpus(&source, jokes);
    let out = dir.join("prepared");
    build::run(&common::args(&source, &out, &["--seq-len=64", "--val-fraction=0.1", "--seed=3"])).unwrap();
    (source, out)
}

fn docs_of(out: &Path, split: &str) -> Vec<(String, Vec<u32>)> {
    let mut buffer = Vec::new();
    inspect::dump_docs(out, split, &mut buffer).unwrap();
    String::from_utf8(buffer)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let tokens = value["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
            (value["text"].as_str().unwrap().to_string(), tokens)
        })
        .collect()
}

#[test]
fn every_kept_joke_is_packed_once_in_order_and_in_one_split() {
    let dir = tempfile::tempdir().unwrap();
    let (source, out) = prepared(dir.path(), 300);
    let dataset = Dataset::open(&out).unwrap();
    let manifest = &dataset.manifest;
    assert_eq!(manifest.counts.source_records, 300);
    assert_eq!(manifest.counts.documents, 300);
    assert_eq!((manifest.splits["train"].documents, manifest.splits["val"].documents), (270, 30));
    assert!(manifest.splits["train"].split_documents > 0, "the corpus has jokes longer than a row");

    let tokenizer = TextTokenizer::load(&common::gpt2_tokenizer().display().to_string()).unwrap();
    let template = Template::parse("JOKE: {text}<|endoftext|>", &tokenizer.special_tokens()).unwrap();
    let source_text = fs::read_to_string(&source).unwrap();
    let expected: HashSet<String> =
        source_text.split("\n\n").filter(|j| !j.is_empty()).map(|j| template.render(j)).collect();

    let mut seen = HashSet::new();
    for split in ["train", "val"] {
        for (text, tokens) in docs_of(&out, split) {
            // The document's tokens, reassembled from its pieces, are exactly its templated text.
            assert_eq!(
                tokens,
                tokenizer
                    .encode(&template, text.trim_start_matches("JOKE: ").trim_end_matches("<|endoftext|>"))
                    .unwrap()
            );
            assert!(seen.insert(text), "a joke appears twice (or in both splits)");
        }
        let rows = dataset.read_split(split).unwrap();
        assert!(rows.lengths.iter().all(|&l| l as usize <= SEQ_LEN && l > 0));
        assert_eq!(rows.token_count(), manifest.splits[split].tokens);
    }
    assert_eq!(seen, expected);
}

#[test]
fn best_fit_packs_tighter_than_next_fit() {
    let documents: Vec<Vec<u32>> = (0..2000u32).map(|i| vec![i; 1 + (i as usize * 7919) % 300]).collect();
    let packed = pack::pack(&documents, 256);
    // Next-fit: fill rows in corpus order, opening a new row when a piece does not fit.
    let (mut next_fit_rows, mut used) = (0, 256);
    for doc in &documents {
        let mut remaining = doc.len();
        while remaining > 0 {
            if used == 256 || (remaining <= 256 && used + remaining > 256) {
                next_fit_rows += 1;
                used = 0;
            }
            let take = remaining.min(256 - used);
            used += take;
            remaining -= take;
        }
    }
    assert!(packed.rows.len() < next_fit_rows, "{} rows vs next-fit {next_fit_rows}", packed.rows.len());
    let total: usize = documents.iter().map(Vec::len).sum();
    assert!(pack::fill_ratio(&packed.rows, 256) > 0.99, "fill {}", pack::fill_ratio(&packed.rows, 256));
    assert_eq!(packed.rows.iter().map(|r| r.tokens.len()).sum::<usize>(), total);
}

#[test]
fn a_rerun_with_the_same_inputs_does_nothing_and_a_change_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let (source, out) = prepared(dir.path(), 50);
    let before = fs::metadata(out.join("manifest.json")).unwrap().modified().unwrap();
    let again = build::run(&common::args(&source, &out, &["--seq-len=64", "--val-fraction=0.1", "--seed=3"])).unwrap();
    assert!(again.up_to_date);
    assert_eq!(fs::metadata(out.join("manifest.json")).unwrap().modified().unwrap(), before);
    let changed =
        build::run(&common::args(&source, &out, &["--seq-len=32", "--val-fraction=0.1", "--seed=3"])).unwrap();
    assert!(!changed.up_to_date);
    assert_eq!(Dataset::open(&out).unwrap().manifest.seq_len, 32);
}

#[test]
fn corruption_and_version_changes_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = prepared(dir.path(), 50);
    let shard = out.join("train-00000.shard");
    let original = fs::read(&shard).unwrap();

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x40;
    fs::write(&shard, &flipped).unwrap();
    let error = Dataset::open(&out).unwrap().read_split("train").unwrap_err();
    assert!(matches!(error, ShardError::Checksum { .. }), "{error}");
    assert!(error.to_string().contains("train-00000.shard"), "{error}");

    // A damaged shard whose checksum was also updated still fails to decode.
    let truncated = zstd::encode_all(&zstd::decode_all(&original[..]).unwrap()[..100], 3).unwrap();
    fs::write(&shard, &truncated).unwrap();
    let mut manifest = Dataset::open(&out).unwrap().manifest;
    manifest.splits.get_mut("train").unwrap().shards[0].sha256 = artifact::sha256_bytes(&truncated);
    manifest.seal();
    fs::write(out.join("manifest.json"), manifest.to_json_pretty()).unwrap();
    let error = Dataset::open(&out).unwrap().read_split("train").unwrap_err();
    assert!(matches!(error, ShardError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("truncated"), "{error}");

    // A manifest edited by hand breaks its lineage hash.
    let text = fs::read_to_string(out.join("manifest.json")).unwrap();
    fs::write(out.join("manifest.json"), text.replace("\"seq_len\": 64", "\"seq_len\": 65")).unwrap();
    assert!(matches!(Dataset::open(&out).unwrap_err(), ShardError::Lineage { .. }));

    fs::write(out.join("manifest.json"), text.replace("\"format_version\": 1", "\"format_version\": 99")).unwrap();
    let error = Dataset::open(&out).unwrap_err();
    assert!(matches!(error, ShardError::Version { found: 99, .. }), "{error}");

    fs::write(out.join("manifest.json"), "{ not json").unwrap();
    assert!(matches!(Dataset::open(&out).unwrap_err(), ShardError::Manifest { .. }));
}

#[test]
fn a_failed_run_keeps_the_previous_output_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = prepared(dir.path(), 50);
    let manifest_before = fs::read(out.join("manifest.json")).unwrap();
    let broken = dir.path().join("broken.jsonl");
    fs::write(&broken, "{\"text\": \"fine\"}\n{\"text\": \"cut off").unwrap();
    let error = build::run(&common::args(&broken, &out, &["--seq-len=64"])).err().unwrap();
    assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    assert_eq!(fs::read(out.join("manifest.json")).unwrap(), manifest_before);
    for split in ["train", "val"] {
        Dataset::open(&out).unwrap().read_split(split).unwrap();
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    // corpus.txt, broken.jsonl, prepared and its lock file (which stays: see OutputLock)
    assert_eq!(leftovers.len(), 4, "{leftovers:?}");
    assert!(dir.path().join(".prepared.lock").is_file());
}

#[test]
fn an_empty_corpus_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("empty.csv");
    fs::write(&source, "ID,Joke\n1,\"  \"\n2,\n").unwrap();
    let out = dir.path().join("out");
    let error = format!("{:#}", build::run(&common::args(&source, &out, &[])).err().unwrap());
    assert!(error.contains("no jokes left") && error.contains("empty 2"), "{error}");
    assert!(!out.exists());
}

#[test]
fn source_checksum_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("corpus.txt");
    common::write_text_corpus(&source, 5);
    let out = dir.path().join("out");
    let error = format!("{:#}", build::run(&common::args(&source, &out, &["--sha256=00ff"])).err().unwrap());
    assert!(error.contains("--sha256 expects 00ff"), "{error}");
    let sha = artifact::sha256_file(&source).unwrap();
    build::run(&common::args(&source, &out, &[&format!("--sha256={}", sha.to_uppercase())])).unwrap();
}

#[test]
fn malformed_records_are_counted_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("jokes.csv");
    let mut csv = String::from("ID,Joke\n1,\"unterminated quote\n2,\"fine\"\n");
    for i in 3..30 {
        csv += &format!("{i},Joke number {i} is a good one.\n");
    }
    fs::write(&source, csv).unwrap();
    let out = dir.path().join("out");
    let manifest = build::run(&common::args(&source, &out, &["--seq-len=64"])).unwrap().manifest;
    assert_eq!(manifest.counts.dropped[0], ("malformed".to_string(), 1));
    assert_eq!(manifest.counts.first_malformed_line, Some(2));
    assert_eq!(manifest.counts.source_records, 28);
}
