//! The reference run's data as a real prepared dataset, and helpers to run the stage.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use shards::{Counts, Manifest, Row, Segment, ShardInfo, SourceInfo, SplitInfo, TokenizerInfo};
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

/// The tiny random-weight GPT-2 made by transformers (crates/gpt2/tests/fixtures).
pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt2/tests/fixtures/tiny")
}

pub fn expected() -> Value {
    serde_json::from_str(&fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap()
}

/// Write the reference run's rows (packed documents) as a prepared dataset in `dir`.
pub fn write_dataset(dir: &Path) {
    write_splits(dir, true);
}

/// The reference run's training rows and no validation split, as `prepare --val-fraction 0`
/// writes it.
pub fn write_dataset_without_validation(dir: &Path) {
    write_splits(dir, false);
}

fn write_splits(dir: &Path, with_validation: bool) {
    let expected = expected();
    let seq_len = expected["seq_len"].as_u64().unwrap() as u32;
    let eos = expected["eos"].as_u64().unwrap() as u32;
    fs::create_dir_all(dir).unwrap();
    let tokenizer = dir.join(tokenizer::FILE_NAME);
    fs::copy(fixtures().join("tokenizer.json"), &tokenizer).unwrap();
    let mut splits = BTreeMap::new();
    let mut documents = 0;
    for (name, key) in [("train", "train_rows"), ("val", "val_rows")] {
        let rows = packed_rows(&expected[key]);
        if name == "val" && !with_validation {
            splits.insert(
                name.to_string(),
                SplitInfo { documents: 0, split_documents: 0, rows: 0, tokens: 0, fill: 0.0, shards: vec![] },
            );
            continue;
        }
        let file = format!("{name}-00000.shard");
        let sha256 = shards::shard::write(&dir.join(&file), &rows, seq_len, 2, eos).unwrap();
        let tokens: u64 = rows.iter().map(|r| r.tokens.len() as u64).sum();
        let docs = rows.iter().map(|r| r.segments.len() as u64).sum();
        documents += docs;
        let shard = ShardInfo { file, sha256, rows: rows.len() as u64, tokens };
        let fill = tokens as f64 / (rows.len() as f64 * seq_len as f64);
        splits.insert(
            name.to_string(),
            SplitInfo { documents: docs, split_documents: 0, rows: shard.rows, tokens, fill, shards: vec![shard] },
        );
    }
    let (rows, tokens) = splits.values().fold((0, 0), |(r, t), s| (r + s.rows, t + s.tokens));
    let mut manifest = Manifest {
        format_version: shards::FORMAT_VERSION,
        tokenizer: TokenizerInfo {
            source: "parity fixture".into(),
            sha256: artifact::sha256_file(&tokenizer).unwrap(),
            vocab_size: 512,
            eos_token: "<|endoftext|>".into(),
            eos_id: eos,
        },
        template: "{text}<|endoftext|>".into(),
        seq_len,
        token_bytes: 2,
        source: SourceInfo {
            location: "scripts/fixtures/train_parity.py".into(),
            path: String::new(),
            sha256: String::new(),
            bytes: 0,
            format: "rows".into(),
        },
        counts: Counts {
            source_records: documents,
            dropped: vec![],
            first_malformed_line: None,
            documents,
            rows,
            tokens,
            fill: 0.0,
        },
        splits,
        args: Value::Null,
        inputs_hash: String::new(),
        lineage: String::new(),
    };
    manifest.seal();
    fs::write(dir.join(shards::MANIFEST_FILE), manifest.to_json_pretty()).unwrap();
}

fn packed_rows(rows: &Value) -> Vec<Row> {
    let mut doc = 0;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|documents| {
            let mut row = Row { tokens: Vec::new(), segments: Vec::new() };
            for document in documents.as_array().unwrap() {
                row.segments.push(Segment { start: row.tokens.len() as u32, doc, doc_offset: 0 });
                row.tokens.extend(document.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32));
                doc += 1;
            }
            row
        })
        .collect()
}

/// The reference run's flags (dropout 0, file order, CPU), plus `extra`.
pub fn parity_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let h = &expected()["hyper"];
    let mut args: Vec<String> =
        vec!["train".into(), "--data".into(), data.display().to_string(), "--out".into(), out.display().to_string()];
    args.extend(["--init".into(), tiny_model().display().to_string()]);
    for (flag, key) in [
        ("--micro-batch", "micro_batch"),
        ("--grad-accum", "grad_accum"),
        ("--epochs", "epochs"),
        ("--lr", "lr"),
        ("--warmup-steps", "warmup_steps"),
        ("--weight-decay", "weight_decay"),
        ("--beta1", "beta1"),
        ("--beta2", "beta2"),
        ("--eps", "eps"),
        ("--max-grad-norm", "max_grad_norm"),
    ] {
        args.extend([flag.to_string(), h[key].to_string()]);
    }
    args.extend(["--dropout", "0", "--no-shuffle", "--device", "cpu", "--eval-every", "0"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The train binary with `args` (an argv whose first element is the program name).
pub fn train_bin(args: &[String]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_train"));
    command.args(&args[1..]);
    command
}

pub fn train_args(argv: &[String]) -> train::cli::TrainArgs {
    use clap::Parser;
    train::cli::Cli::parse_from(argv).args
}

/// Every tensor of a safetensors file, by name, as f32 values.
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            (name, view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
        })
        .collect()
}

pub fn max_abs_difference(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "different tensor names");
    a.iter().flat_map(|(name, x)| x.iter().zip(&b[name]).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

/// `tensors` without the attention key biases. Their true gradient is zero (softmax ignores a
/// shift shared by all keys), so Adam sees only rounding noise there and scales it up to ±lr
/// steps: two correct trainers agree on every weight but those.
pub fn without_key_bias(mut tensors: BTreeMap<String, Vec<f32>>) -> BTreeMap<String, Vec<f32>> {
    for (_, values) in tensors.iter_mut().filter(|(name, _)| name.ends_with("attn.c_attn.bias")) {
        let width = values.len() / 3;
        values.drain(width..2 * width);
    }
    tensors
}

/// Starts train with `argv` and kills it (SIGKILL) once `run` holds a checkpoint: any one, as the
/// first is deleted once later ones are kept, and a poll can miss it.
pub fn kill_at_a_checkpoint(argv: &[String], run: &Path) {
    use std::{
        process::Stdio,
        thread,
        time::{Duration, Instant},
    };
    let mut child = train_bin(argv).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while train::checkpoint::list(run).unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!run.join("final").exists());
}
