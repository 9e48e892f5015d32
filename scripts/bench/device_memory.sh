#!/usr/bin/env bash
# The memory a training run holds on a CUDA card, without a GPU: the train stage built with the
# development feature `cuda-compile` runs on `--device cuda-compile` (crates/cuda-compile), whose
# memory is CubeCL's own memory management configured as cubecl-cuda configures it for a card of
# CUDA_COMPILE_MEMORY_GIB, with no bytes behind it; the stage prints the most that was in use and
# the most CubeCL's pools reserved. Each shape with the train stage's exact-size buffers and with
# CubeCL's default pools (a cubecl.toml with `[memory] persistent_memory = "disabled"`), on an
# H200 (140.4 GiB) and, for gpt2-medium, an 11 GiB card. Two optimizer steps (the second holds
# AdamW's moments), random weights over the taivop jokes (stupidstuff.json) of
# ../shared/datasets.
#   scripts/bench/device_memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/cuda_compile_rows.sh
mkdir "$work/pools"
printf '[memory]\npersistent_memory = "disabled"\n' > "$work/pools/cubecl.toml"
echo "| shape | precision | card (GiB) | buffers | in use (GiB) | reserved (GiB) |"
echo "|---|---|---:|---|---:|---:|"
for shape in "gpt2 1024 4 1 140.4" "gpt2-medium 1024 1 1 140.4" "gpt2-medium 550 1 16 140.4" \
    "gpt2-medium 1024 1 1 11" "gpt2-medium 550 1 16 11"; do
    read -r model seq_len micro_batch grad_accum card <<< "$shape"
    for precision in f32 bf16; do
        for buffers in exact pools; do
            # CubeCL reads its configuration from the working directory.
            dir=$work
            [ "$buffers" = pools ] && dir=$work/pools
            rm -rf "$work/run"
            peak=$(cd "$dir" && CUDA_COMPILE_MEMORY_GIB=$card "$target/release/train" --data "$work/data-$seq_len" \
                --init "random:$model" --out "$work/run" --device cuda-compile --max-steps 2 \
                --micro-batch "$micro_batch" --grad-accum "$grad_accum" --warmup-steps 0 --eval-every 0 \
                --precision "$precision" 2>&1 > /dev/null | sed -n 's/^cuda-compile: memory at its peak: //p')
            read -r in_use _ _ _ reserved _ <<< "$peak"
            echo "| $model $micro_batch × $seq_len × $grad_accum | $precision | $card | $buffers | $in_use | $reserved |"
        done
    done
done
