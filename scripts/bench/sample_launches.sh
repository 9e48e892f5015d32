#!/usr/bin/env bash
# Kernel launches per decoding step on burn's CubeCL path without fusion (as the sample stage
# runs CUDA), counted without a GPU: the sample stage built with the development feature `wgpu`
# runs on Mesa's software Vulkan driver (`apt-get install mesa-vulkan-drivers`), and CubeCL logs
# one line per kernel it launches.
#
# The model has gpt2's 12 layers and 12 heads, but is 72 wide over the demo's 512-token
# vocabulary (the count depends on neither); its weights are those of one training step on
# the demo jokes. Samples of 11 and 41 tokens from the same prompt, chosen as the FLAGs say
# (default --greedy), SAMPLES of them decoded together (1 by default), differ only in 30
# decoding steps: their difference over 30 is a step's launches; what the shorter run launched
# besides its 10 steps is the prompt's pass (and the run's setup).
#   scripts/bench/sample_launches.sh [SAMPLES [FLAG...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/wgpu_work.sh
samples=${1:-1}
shift $(( $# > 0 ? 1 : 0 ))
decoding=("${@:---greedy}")
wgpu_work 128 12 12 0.0 train sample
(cd "$work" && "$target/release/train" --data data --init random:model.json --out model --device cpu \
    --max-steps 1 --eval-every 0 --seed 0 > /dev/null 2>&1)
log_launches

# launches TOKENS: sample TOKENS tokens, leave the kernel names (one per launch) in $work/TOKENS.
launches() {
    (cd "$work" && "$target/release/sample" --model model/final --prompt "Why did the" "${decoding[@]}" \
        --num-samples "$samples" --max-new-tokens "$1" --device wgpu --out "samples-$1.jsonl" > /dev/null 2>&1)
    if ! grep -q '"finish":"length"' "$work/samples-$1.jsonl"; then
        echo "the sample of $1 tokens ended early: the count needs every token" >&2
        exit 1
    fi
    kernel_names "$1"
}
launches 11
launches 41
per_token=$(( ($(wc -l < "$work/41") - $(wc -l < "$work/11")) / 30 ))
echo "kernel launches, sample --device wgpu ${decoding[*]} (burn wgpu without fusion, as on CUDA; autotune off): 12 layers, 12 heads, batch $samples"
echo "  per decoding step ($samples tokens): $per_token ($(( per_token / 12 )) a layer, rest included)"
# The 11 tokens' run is the prompt's pass (its first token) and 10 decoding steps.
echo "  the prompt's pass, with the run's setup: $(( $(wc -l < "$work/11") - 10 * per_token ))"
# By kernel, per decoding step.
sort "$work/11" | uniq -c > "$work/k11"
sort "$work/41" | uniq -c > "$work/k41"
join -1 2 -2 2 -a 2 -e 0 -o 0,1.1,2.1 <(sort -k2 "$work/k11") <(sort -k2 "$work/k41") |
    awk '{ n = ($3 - $2) / 30; if (n) printf "  %-32s%8.1f\n", $1, n }' | sort -k2 -rn
