#!/usr/bin/env bash
# Kernel launches per training step on burn's CubeCL + fusion path (the path CUDA takes),
# counted without a GPU: the train stage built with the development feature `wgpu` runs on
# Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`), and CubeCL logs one
# line per kernel it launches (cubecl.toml `[profiling.logger] level = "minimal"`).
#
# The model has gpt2-medium's 24 layers and 16 heads and dropout 0.1, but is 64 wide over the
# demo's 512-token vocabulary (the count depends on neither, and the software driver is slow);
# rows of 128 tokens of the demo jokes, 2 rows a micro-batch. Runs of 1 and 3 steps, and 3 steps of 4 micro-batches, differ only in
# their steps: their differences give the launches of an optimizer step and of each extra
# micro-batch, and which kernels they are.
#   scripts/bench/launches.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/wgpu_work.sh
wgpu_work 128 24 16 0.1
log_launches

# launches STEPS GRAD_ACCUM: run, leave the kernel names (one per launch) in $work/STEPS-ACCUM.
launches() {
    (cd "$work" && "$target/release/train" --data data --init random:model.json \
        --out "run-$1-$2" --device wgpu --micro-batch 2 --grad-accum "$2" --max-steps "$1" \
        --eval-every 0 --save-every 1000 --seed 0 > /dev/null 2>&1)
    kernel_names "$1-$2"
}
launches 1 1
launches 3 1
launches 3 4
count() { wc -l < "$work/$1"; }
one=$(count 1-1) three=$(count 3-1) accum=$(count 3-4)
echo "kernel launches, train --device wgpu (burn wgpu + fusion, autotune off): 24 layers, 16 heads, rows 2 x 128"
echo "  per optimizer step with one micro-batch: $(( (three - one) / 2 ))"
echo "  per extra micro-batch (forward + backward): $(( (accum - three) / 9 ))"
echo "  per optimizer step at the reddit pipeline's 16 micro-batches: $(( (three - one) / 2 + 15 * (accum - three) / 9 ))"
# By kernel: per micro-batch, and the rest of a step (optimizer, clipping, the step's bookkeeping).
sort "$work/1-1" | uniq -c > "$work/k1"
sort "$work/3-1" | uniq -c > "$work/k3"
sort "$work/3-4" | uniq -c > "$work/k34"
python3 - "$work" <<'PY'
import sys, collections
work = sys.argv[1]
def read(name):
    counts = collections.Counter()
    for line in open(f"{work}/{name}"):
        n, kernel = line.split()
        counts[kernel] = int(n)
    return counts
one, three, accum = read("k1"), read("k3"), read("k34")
kernels = sorted(set(one) | set(three) | set(accum))
print(f"  {'kernel':<32}{'per micro-batch':>16}{'rest of a step':>16}")
rows = []
for k in kernels:
    per_batch = (accum[k] - three[k]) / 9
    per_step = (three[k] - one[k]) / 2 - per_batch
    rows.append((per_batch + per_step, k, per_batch, per_step))
for _, k, per_batch, per_step in sorted(rows, reverse=True):
    if per_batch or per_step:
        print(f"  {k:<32}{per_batch:>16.0f}{per_step:>16.0f}")
PY
