#!/usr/bin/env bash
# The sample stage itself on CUDA, as a user runs it (scripts/gpu/check.sh generate calls it):
# random-weight gpt2 and gpt2-medium saved by transformers in the Hugging Face layout, greedy
# samples of 256 tokens from a 10-token prompt, 1 and 8 decoded together, f32 and bf16; then
# gpt2 with the reddit pipeline's top-k sampling (top-20 for 5 tokens, then top-3: the device
# finds the candidates, the host draws), and with top-p 0.9 alone (the device sends the 64 most
# likely tokens and the softmax denominator; on these random weights the nucleus is wider, so
# the rows are read as well: the path's cost). Each configuration runs twice (the first fills the
# on-disk kernel cache) and the second's pace line is printed: tokens/s and the first tokens'
# wait, with the stage's whole host loop around cuda_check's decoding steps. Last, where a
# gpt2 f32 token's time goes at batch 1, kernel by kernel and grid (the few-row kernel's q/k/v
# (288 cubes), MLP expansion (384), projections (96) and LM head (6,283) apart): greedy runs of
# 64 and 192 new tokens with CubeCL's profiling logger, their difference over 128
# (scripts/lib/cubecl_profile.py).
# To try it without a GPU: SAMPLE=target/release/sample DEVICE=cpu NEW_TOKENS=8 (bf16 then fails).
set -uo pipefail
cd "$(dirname "$0")/../.."
sample=$(realpath "${SAMPLE:?the sample binary: check.sh passes the one it unpacks from target/gpu/sample.xz}")
device=${DEVICE:-cuda}
new_tokens=${NEW_TOKENS:-256}
tokenizer=$PWD/data/tokenizers/gpt2/tokenizer.json
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
python3 - "$models" <<'PY' || exit 1
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

for name, shape in {"gpt2": {}, "gpt2-medium": {"n_embd": 1024, "n_layer": 24, "n_head": 16}}.items():
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**shape)).save_pretrained(f"{sys.argv[1]}/{name}")
PY
# run MODEL PRECISION SAMPLES DECODING [NEW_TOKENS]: one run's pace line, or its error's last lines.
run() {
    local decoding=(--greedy)
    [ "$4" = top-k ] && decoding=(--first-top-k 20 --first-tokens 5 --top-k 3 --seed 0)
    [ "$4" = top-p ] && decoding=(--top-p 0.9 --seed 0)
    if "$sample" --model "$models/$1" --tokenizer "$tokenizer" \
        --prompt "Why did the chicken cross the road? To" "${decoding[@]}" --max-new-tokens "${5:-$new_tokens}" \
        --num-samples "$3" --device "$device" --precision "$2" > /dev/null 2> "$models/stderr"; then
        grep '^sample: [0-9]' "$models/stderr" | sed 's/^sample: //'
    else
        echo "failed:"; tail -5 "$models/stderr"; return 1
    fi
}
# measure MODEL PRECISION SAMPLES DECODING: the second run's pace line.
measure() {
    run "$@" > /dev/null
    pace=$(run "$@") || status=1
    echo "sample stage, $1, $2, batch $3, $new_tokens new tokens $4: $pace"
}
status=0
for model in gpt2 gpt2-medium; do
    for precision in f32 bf16; do
        for samples in 1 8; do
            measure "$model" "$precision" "$samples" greedy
        done
    done
done
for precision in f32 bf16; do
    measure gpt2 "$precision" 8 top-k
done
measure gpt2 f32 8 top-p
# CubeCL reads its configuration from the working directory; the kernels compiled above are in
# the user's kernel cache, which a cubecl.toml without `[compilation] cache` leaves in place.
for tokens in 64 192; do
    mkdir -p "$models/profile-$tokens"
    printf '[profiling.logger]\nlevel = "full"\nfile = "profile.log"\n' > "$models/profile-$tokens/cubecl.toml"
    (cd "$models/profile-$tokens" && run gpt2 f32 1 greedy "$tokens" > /dev/null) || status=1
done
echo "sample stage, gpt2, f32, batch 1, greedy, a token's kernels: $(python3 scripts/lib/cubecl_profile.py \
    "$models/profile-64/profile.log" "$models/profile-192/profile.log" 128)"
exit $status
