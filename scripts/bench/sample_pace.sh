#!/usr/bin/env bash
# The sample stage's pace on burn's CubeCL path without a GPU: the stage built with the
# development feature `wgpu`, on Mesa's software Vulkan driver (`apt-get install
# mesa-vulkan-drivers`), the model of scripts/bench/sample_launches.sh (gpt2's 12 layers and 12
# heads, 72 wide over a 512-token vocabulary: kernels that cost little to run, so the host's
# time per operation shows; VOCABULARY=gpt2: over GPT-2's 50,257 tokens). Samples of 100
# tokens, chosen as the FLAGs say (default --greedy), 1 and 8 decoded together, three runs each;
# prints the stage's pace lines.
#   [VOCABULARY=gpt2] scripts/bench/sample_pace.sh [FLAG...]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/wgpu_work.sh
decoding=("${@:---greedy}")
wgpu_work 128 12 12 0.0 train sample
(cd "$work" && "$target/release/train" --data data --init random:model.json --out model --device cpu \
    --max-steps 1 --eval-every 0 --seed 0 > /dev/null 2>&1)
for samples in 1 8; do
    for _ in 1 2 3; do
        (cd "$work" && "$target/release/sample" --model model/final --prompt "Why did the" "${decoding[@]}" \
            --num-samples "$samples" --max-new-tokens 100 --device wgpu 2>&1 > /dev/null | grep '^sample: [0-9]' |
            sed "s/^sample:/batch $samples:/")
    done
done
