#!/usr/bin/env bash
# The kernels a training step compiles on a fresh machine (no kernel cache), and the time CubeCL
# and NVRTC take to write and compile them, counted without a GPU: the train stage built with
# the development feature `cuda-compile` runs one optimizer step on `--device cuda-compile`
# (crates/cuda-compile), which compiles each distinct kernel for an H100/H200 as burn's CUDA
# backend does, one after another, and runs none. The issue's shapes: gpt2 at 4 × 1024 and
# gpt2-medium at 1 × 550 with 16 micro-batches (the original's), f32 and bf16, random weights
# over the taivop jokes (stupidstuff.json) of ../shared/datasets. On a GPU machine the same
# kernels are compiled before the first step; what this host takes is the part a faster host
# shortens.
#   scripts/bench/first_step_kernels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/cuda_compile_rows.sh
for shape in "gpt2 1024 4 1" "gpt2-medium 550 1 16"; do
    read -r model seq_len micro_batch grad_accum <<< "$shape"
    for precision in f32 bf16; do
        rm -rf "$work/run"
        "$target/release/train" --data "$work/data-$seq_len" --init "random:$model" --out "$work/run" \
            --device cuda-compile --max-steps 1 --micro-batch "$micro_batch" --grad-accum "$grad_accum" \
            --eval-every 0 --precision "$precision" 2>&1 > /dev/null |
            sed -n "s/^cuda-compile: /$model ${micro_batch} × $seq_len, --grad-accum $grad_accum, $precision: /p"
    done
done
