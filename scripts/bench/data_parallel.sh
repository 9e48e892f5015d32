#!/usr/bin/env bash
# Data-parallel training on the CPU: train's tokens/s with one worker and with two
# (`--devices cpu,cpu`), gpt2's shape (124M, random weights, dropout 0) on rows of 64 tokens of
# the demo jokes, 4 micro-batches of 4 rows a step; then the time of the sums across the
# workers for gpt2's gradients (cargo bench -p train --bench sum_across_workers). Two workers on
# one machine share its cores, which one worker's matrix products already use: the ideal here
# is below 2×.
#   scripts/bench/data_parallel.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-4}
cargo build --release --quiet -p prepare -p train
target=${CARGO_TARGET_DIR:-target}/release
work=data/bench/data-parallel
rm -rf "$work"
"$target/prepare" --source data/demo/jokes.txt --format text --tokenizer data/demo/tokenizer.json \
    --template "JOKE: {text}<|endoftext|>" --seq-len 64 --val-fraction 0 --out "$work/data" > /dev/null
for devices in cpu cpu,cpu; do
    "$target/train" --data "$work/data" --init random:gpt2 --out "$work/run-$devices" --devices "$devices" \
        --micro-batch 4 --grad-accum 4 --max-steps "$steps" --dropout 0 --eval-every 0 --save-every 0 \
        > /dev/null 2>&1
    python3 - "$work/run-$devices/metrics.jsonl" "$devices" <<'PY'
import json, statistics, sys
steps = [json.loads(line) for line in open(sys.argv[1]) if '"eval"' not in line]
seconds = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(steps, steps[1:])]
# The first step allocates and warms the caches: left out.
rates = [step["tokens_per_s"] for step in steps[1:]]
print(f"--devices {sys.argv[2]}: {statistics.median(rates):.1f} tokens/s, "
      f"{statistics.median(seconds):.2f} s a step (medians of steps 2-{len(steps)})")
PY
done
cargo bench --quiet -p train --bench sum_across_workers
