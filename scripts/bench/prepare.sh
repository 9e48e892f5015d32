#!/usr/bin/env bash
# Prepare-stage throughput and peak memory on >= 50 MB of joke text, next to a Python baseline
# (json + HF tokenizers encode_batch on all cores + packing) on the same file, in the same run.
# Needs ../shared/datasets (real joke text) and `pip install -r scripts/requirements.txt`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${MB:-50}
corpus=data/bench/reddit_jokes.json
[ -f "$corpus" ] || python3 scripts/bench/make_corpus.py --mb "$MB" --out "$corpus"
cargo build --release --quiet -p prepare
tokenizer=data/tokenizers/gpt2/tokenizer.json

measure() { # prints "seconds peak_kb" of a command
    /usr/bin/time -f "%e %M" -o data/bench/time.txt "$@" >/dev/null 2>&1
    cat data/bench/time.txt
}
read -r rust_s rust_kb < <(measure ./target/release/prepare --source "$corpus" --tokenizer "$tokenizer" \
    --seq-len 1024 --out data/bench/prepared --force)
read -r py_s py_kb < <(measure python3 scripts/bench/prepare_baseline.py --source "$corpus" \
    --tokenizer "$tokenizer" --seq-len 1024)
python3 - "$corpus" "$rust_s" "$rust_kb" "$py_s" "$py_kb" <<'PY'
import json, sys
corpus, rust_s, rust_kb, py_s, py_kb = sys.argv[1], *map(float, sys.argv[2:])
records = json.load(open(corpus))
mb = sum(len((r["title"] + "\n" + r["body"]).encode()) for r in records) / 1e6
jokes = len(records)
print(f"corpus: {corpus}: {jokes} jokes, {mb:.1f} MB of joke text; {__import__('os').cpu_count()} cores")
print(f"{'':10}{'seconds':>9}{'MB/s':>8}{'jokes/s':>10}{'peak MB':>9}")
for name, s, kb in (("prepare", rust_s, rust_kb), ("python", py_s, py_kb)):
    print(f"{name:10}{s:9.2f}{mb / s:8.2f}{jokes / s:10.0f}{kb / 1024:9.0f}")
print(f"throughput ratio prepare/python: {py_s / rust_s:.2f}x; peak memory ratio: {rust_kb / py_kb:.2f}x")
PY
