#!/usr/bin/env bash
# The host's share of a decoding step on the CUDA path, without a GPU: the sample stage built
# with the development feature `cuda-compile` runs on `--device cuda-compile`
# (crates/cuda-compile), which takes CubeCL's whole CUDA path on the host (fusion, the launch
# path, the memory pools), compiles each kernel once and runs none (reads give zeros). A model
# of gpt2's shape (12 layers, 768 wide, GPT-2's vocabulary; its weights the zeros a one-step run
# on that device writes), a 551-token prompt so that every decoding step takes the same
# decoding-attention kernel (keys 551-801), greedy, 50 and 250 new tokens, twice each, 1 and 8
# samples decoded together; prints the stage's pace lines. The host's time a step is the
# difference between the two lengths' times after the first token, over 200 steps.
#   scripts/bench/sample_host.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/nvrtc.sh
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p prepare -p train -p sample --features train/cuda-compile,sample/cuda-compile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$target/release/prepare" --source data/demo/jokes.txt --format text --tokenizer data/tokenizers/gpt2/tokenizer.json \
    --template '{text}<|endoftext|>' --seq-len 128 --out "$work/data" > /dev/null 2>&1
"$target/release/train" --data "$work/data" --init random:gpt2 --out "$work/run" --device cuda-compile \
    --max-steps 1 --micro-batch 1 --grad-accum 1 --eval-every 0 > /dev/null 2>&1
prompt=$(python3 -c "print(' '.join(['the chicken crossed the road'] * 110))")
run=0
for samples in 1 8; do
    for tokens in 50 250 50 250; do
        run=$((run + 1))
        "$target/release/sample" --model "$work/run/final" --prompt "$prompt" --greedy --num-samples "$samples" \
            --max-new-tokens "$tokens" --device cuda-compile --out "$work/samples-$run.jsonl" 2>&1 |
            grep '^sample: [0-9]' | sed "s/^sample:/batch $samples, $tokens new tokens:/"
    done
done
