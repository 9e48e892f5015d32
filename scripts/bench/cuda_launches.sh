#!/usr/bin/env bash
# Kernel launches per training step on the CUDA path itself, without a GPU: the train stage
# built with the development feature `cuda-compile` runs on `--device cuda-compile`
# (crates/cuda-compile), burn's CUDA backend and fusion over a device that counts every launch
# and runs none. Where scripts/bench/launches.sh counts wgpu's launches (whose fusion differs:
# its products take no element-wise kernel after them), this is CUDA's, at the original's
# shape: gpt2-medium (random weights), rows of 550 tokens of the taivop jokes, one a
# micro-batch, dropout 0.1, f32 and bf16. Runs of 1 and 3 steps, and 3 steps of 4
# micro-batches, differ only in their steps: their differences give the launches of an
# optimizer step and of each extra micro-batch. MODEL, if given, is another `--init random:`
# model (a preset or a config.json: scripts/bench/models/); the 3-step runs' memory at its peak
# is printed too, and an extra micro-batch's launches by kernel.
#   scripts/bench/cuda_launches.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/cuda_compile_rows.sh
model=${1:-gpt2-medium}

# launches STEPS GRAD_ACCUM PRECISION: the launches of a run (its report kept in
# $work/report-STEPS-GRAD_ACCUM-PRECISION).
launches() {
    local report="$work/report-$1-$2-$3"
    rm -rf "$work/run"
    "$target/release/train" --data "$work/data-550" --init "random:$model" --out "$work/run" \
        --device cuda-compile --micro-batch 1 --grad-accum "$2" --max-steps "$1" --precision "$3" \
        --eval-every 0 --save-every 1000 --seed 0 2> "$report" > /dev/null
    sed -n 's/^cuda-compile: .*; \([0-9]*\) launches$/\1/p' "$report"
}
echo "kernel launches, train --device cuda-compile (burn CUDA + fusion, autotune off): $model, rows 1 x 550"
for precision in f32 bf16; do
    one=$(launches 1 1 "$precision") three=$(launches 3 1 "$precision")
    memory=$(sed -n 's/^cuda-compile: memory at its peak: \(.*\), on a card.*/\1/p' "$work/report-3-1-$precision")
    accum=$(launches 3 4 "$precision")
    echo "  $precision: per optimizer step with one micro-batch $(( (three - one) / 2 )), per extra micro-batch" \
        "$(( (accum - three) / 9 )), per step of 16 micro-batches $(( (three - one) / 2 + 15 * (accum - three) / 9 ))"
    echo "  $precision: memory at its peak in 3 steps of one micro-batch: $memory"
done
# An extra micro-batch's launches by kernel: the 3 steps of 4 micro-batches less the 3 of one, a
# ninth.
echo "  an extra micro-batch's launches by kernel (f32, bf16):"
for precision in f32 bf16; do
    for run in 3-1 3-4; do
        sed -n "s/^  launched: \(.*\) \([0-9]*\)$/$precision $run \1 \2/p" "$work/report-$run-$precision"
    done
done | awk '{ count[$3, $1] += ($2 == "3-4" ? $4 : -$4) / 9; kernels[$3] = 1 }
    END { for (k in kernels) { f = count[k, "f32"]; b = count[k, "bf16"]
        if (f || b) printf "    %5.1f %5.1f  %s\n", f, b, k } }' | sort -k3
