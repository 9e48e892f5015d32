#!/usr/bin/env bash
# The train and sample stages on burn's CubeCL + fusion path (the path CUDA takes) against the
# CPU, without a GPU: the development feature `wgpu` on Mesa's software Vulkan driver
# (`apt-get install mesa-vulkan-drivers`). A 2-layer model, 6 steps of 2 rows x 3 micro-batches
# at lr 1e-3 without warmup, clipping on, dropout 0.1 (the same masks on both: Philox counters,
# drawn by a CubeCL kernel on wgpu and on the host for the CPU); each step's loss and gradient norm must
# agree to 1e-4 relative (the tolerance of the CUDA check, scripts/gpu/train_check.py). Then
# greedy samples of the trained model must be the same tokens. LAYERS, HEADS and WIDTH change
# the model's shape (gpt2-xl's layer: WIDTH=1600 HEADS=25 LAYERS=1).
#   scripts/checks/wgpu_parity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/wgpu_work.sh
wgpu_work 64 "${LAYERS:-2}" "${HEADS:-4}" 0.1 train sample
# The backends draw different random weights: both start from those of a 1-step CPU run.
(cd "$work" && "$target/release/train" --data data --init random:model.json --out start --device cpu \
    --max-steps 1 --seed 0 > /dev/null 2>&1)
for device in cpu wgpu; do
    (cd "$work" && "$target/release/train" --data data --init start/final --out "run-$device" \
        --device "$device" --micro-batch 2 --grad-accum 3 --max-steps 6 --lr 1e-3 --warmup-steps 0 --max-grad-norm 1.0 \
        --eval-every 0 --seed 0 > /dev/null 2>&1)
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def steps(device):
    lines = (json.loads(line) for line in open(f"{work}/run-{device}/metrics.jsonl"))
    return [line for line in lines if not line.get("eval")]
worst = 0.0
for cpu, wgpu in zip(steps("cpu"), steps("wgpu"), strict=True):
    for key in ("loss", "grad_norm"):
        relative = abs(cpu[key] - wgpu[key]) / abs(cpu[key])
        worst = max(worst, relative)
        print(f"step {cpu['step']} {key:<9} cpu {cpu[key]:.7f}  wgpu {wgpu[key]:.7f}  relative {relative:.1e}")
print(f"largest relative difference: {worst:.1e}")
sys.exit(0 if worst <= 1e-4 else 1)
PY
# The sample stage: greedy samples of the trained model, 3 rows decoded together with the KV
# cache, the same tokens on both.
for device in cpu wgpu; do
    (cd "$work" && "$target/release/sample" --model run-cpu/final --prompt "Why did the" --greedy --num-samples 3 \
        --max-new-tokens 40 --device "$device" --out "samples-$device.jsonl" > /dev/null 2>&1)
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def tokens(device):
    return [json.loads(line)["tokens"] for line in open(f"{work}/samples-{device}.jsonl")]
cpu, wgpu = tokens("cpu"), tokens("wgpu")
print(f"greedy samples: {len(cpu[0])} tokens, the same on both: {cpu == wgpu}")
sys.exit(0 if cpu == wgpu else 1)
PY
