# Sourced by the scripts that train at the GPU issue's shapes on `--device cuda-compile`
# (scripts/bench/first_step_kernels.sh, device_memory.sh, bf16_products.sh, cuda_launches.sh):
# finds NVRTC (scripts/lib/nvrtc.sh), builds prepare and train with the development feature
# `cuda-compile` ($target/release), and prepares the taivop jokes of ../shared/datasets
# (stupidstuff.json) with GPT-2's tokenizer at 1024 and 550 tokens a row in a fresh $work
# (removed on exit): $work/data-1024, $work/data-550.
source scripts/lib/nvrtc.sh
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet -p prepare -p train --features train/cuda-compile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for seq_len in 1024 550; do
    "$target/release/prepare" --source ../shared/datasets/stupidstuff.json --tokenizer data/tokenizers/gpt2 \
        --seq-len "$seq_len" --out "$work/data-$seq_len" > /dev/null 2>&1
done
