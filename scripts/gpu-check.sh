#!/usr/bin/env bash
# One prepared GPU check, run on a machine with an NVIDIA GPU and Python's torch + transformers
# (there is no Rust there). Build and stage the binary here first:
#   cargo build --release -p gpt2 --features cuda --example cuda_check
#   mkdir -p target/gpu && strip -o target/gpu/cuda_check target/release/examples/cuda_check
# then run this script there with target/gpu carried along. It prints:
#   - CUDA vs CPU logits on the committed tiny fixture;
#   - generation tokens/s at the gpt2 124M shapes, next to transformers' generate on the same card.
set -uo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
status=0
timeout 300 target/gpu/cuda_check || status=$?
timeout 200 python3 scripts/bench_generate_baseline.py --device cuda || status=$?
exit $status
