#!/usr/bin/env bash
# Every kernel the CUDA path launches, compiled for an H100/H200 (sm_90a) with NVRTC, without a
# GPU: the train and sample stages built with the development feature `cuda-compile` run on
# `--device cuda-compile` (crates/cuda-compile), which compiles each distinct kernel as burn's
# CUDA backend would on the card and runs none. Training in f32 with dropout and in bf16 with
# --doc-mask (each with attention's flash kernels, through products, and with the flash kernels
# on tensor cores), evaluation, then greedy, top-k (the reddit pipeline's schedule, batches
# 8 and 20), top-p with a repetition penalty, and bf16 weights; a model with gpt2's head size and
# vocabulary. Any kernel that does not compile fails the check, with NVRTC's log and the source.
#   scripts/checks/cuda_compile.sh
# NVRTC and CUDA's headers come from CUDA_PATH, or else from PyTorch's wheels
# (`pip install -r scripts/requirements.txt`: nvidia-cuda-nvrtc, and nvidia-cuda-crt's headers).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/nvrtc.sh
source scripts/lib/stage_work.sh

# Unoptimised (CI's profile for the GPU features): nothing runs, NVRTC takes the time.
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --profile gpu-check --quiet -p prepare -p train -p sample --features train/cuda-compile,sample/cuda-compile
bin=$target/gpu-check
# gpt2's head size (64) and vocabulary, two layers.
VOCABULARY=gpt2 stage_work "$bin/prepare" 128 2 1 0.1

# Each run prints what it compiled and ends with status 1 if anything did not compile.
compile() {
    echo "== $*"
    (cd "$work" && "$@" --device cuda-compile > /dev/null)
}
train=(--data data --init random:model.json --max-steps 2 --micro-batch 2 --grad-accum 2 --eval-every 1)
compile "$bin/train" "${train[@]}" --out run-f32
compile "$bin/train" "${train[@]}" --out run-bf16 --precision bf16 --doc-mask
# Attention's products route (kernel_choices.rs), both ways.
GPT2_ATTENTION=products compile "$bin/train" "${train[@]}" --out run-products-f32
GPT2_ATTENTION=products compile "$bin/train" "${train[@]}" --out run-products-bf16 --precision bf16 --doc-mask
# The flash kernels on tensor cores: TF32 operands in f32, bf16 in bf16.
GPT2_ATTENTION=flash-tensor-cores compile "$bin/train" "${train[@]}" --out run-tensor-cores-f32
GPT2_ATTENTION=flash-tensor-cores compile "$bin/train" "${train[@]}" --out run-tensor-cores-bf16 --precision bf16 --doc-mask
sample=(--model run-f32/final --prompt "Why did the" --max-new-tokens 8)
compile "$bin/sample" "${sample[@]}" --greedy --out greedy.jsonl
compile "$bin/sample" "${sample[@]}" --num-samples 8 --first-top-k 20 --first-tokens 5 --top-k 3 --out top-k.jsonl
compile "$bin/sample" "${sample[@]}" --num-samples 3 --top-p 0.9 --repetition-penalty 1.2 --out top-p.jsonl
compile "$bin/sample" "${sample[@]}" --precision bf16 --greedy --out greedy-bf16.jsonl
compile "$bin/sample" "${sample[@]}" --precision bf16 --num-samples 20 --first-top-k 20 --first-tokens 5 --top-k 3 \
    --out top-k-bf16.jsonl
echo "every kernel compiled for sm_90a"
