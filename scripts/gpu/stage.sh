#!/usr/bin/env bash
# Build and stage in target/gpu what scripts/gpu/check.sh runs on the GPU machine (which has no
# Rust): the CUDA binaries, stripped and xz-compressed (the carried folder holds at most 64 MiB;
# check.sh unpacks them), and small prepared datasets.
#   scripts/gpu/stage.sh train      target/gpu/train.xz and target/gpu/data/{tiny,jokes-256,jokes-512,jokes-550,jokes-1024}
#                                   (SEQS="256 1024": only those jokes-SEQ)
#   scripts/gpu/stage.sh generate   target/gpu/cuda_check.xz and target/gpu/sample.xz
#   scripts/gpu/stage.sh kernels    target/gpu/kernels-NAME.xz: cube-kernels' tests on CUDA (those
#                                   of the training path; TESTS="NAME ..." for others; each ~5 MB)
#   scripts/gpu/stage.sh products   target/gpu/product_routines.xz: cubek's product routines timed
#   scripts/gpu/stage.sh train kernels generate   several, for one call that runs their checks
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
rm -rf target/gpu && mkdir -p target/gpu
# pack NAME BINARY: BINARY stripped and compressed to target/gpu/NAME.xz.
pack() {
    strip -o "target/gpu/$1" "$2"
    xz -T0 -6 "target/gpu/$1"
}
for stage in "${@:-train}"; do
case "$stage" in
    train)
        cargo build --release -p train --features cuda
        pack train "$target/release/train"
        cargo build --release -p prepare
        data=target/gpu/data
        rm -rf "$data" && mkdir -p "$data"
        # Text over the tiny fixture model's 512-token vocabulary (t0..t510), for CUDA vs CPU.
        python3 -c "
import random
r = random.Random(1)
for _ in range(400):
    print(' '.join(f't{r.randrange(511)}' for _ in range(r.randint(3, 30))), end='\\n\\n')" > "$data/tiny.txt"
        "$target/release/prepare" --source "$data/tiny.txt" --format text \
            --tokenizer crates/train/tests/fixtures/parity/tokenizer.json --template '{text}<|endoftext|>' \
            --seq-len 48 --out "$data/tiny"
        # 550: the original post's rows; 256, 512 and 1024 for train_check.py's `fit`. SEQS="256
        # 1024" stages fewer, to leave room in the carried 64 MiB for other stages' binaries.
        for seq in ${SEQS:-256 512 550 1024}; do
            "$target/release/prepare" --source ../shared/datasets/stupidstuff.json --tokenizer data/tokenizers/gpt2 \
                --seq-len "$seq" --out "$data/jokes-$seq"
        done
        rm "$data/tiny.txt"
        ;;
    kernels)
        tests=(${TESTS:-mixed_matmul layer_norm bias_gelu column_sums flash_attention attention_softmax cross_entropy embedding_gradient})
        cargo test --release -p cube-kernels --features cuda --no-run "${tests[@]/#/--test=}" \
            --message-format=json > target/gpu/kernels.json
        for name in "${tests[@]}"; do
            pack "kernels-$name" "$(python3 -c "
import json, sys
for line in open('target/gpu/kernels.json'):
    record = json.loads(line)
    if record.get('target', {}).get('name') == sys.argv[1] and record.get('executable'):
        print(record['executable'])" "$name")"
        done
        rm target/gpu/kernels.json
        ;;
    generate)
        cargo build --release -p gpt2 --features cuda --example cuda_check
        cargo build --release -p sample --features cuda
        pack cuda_check "$target/release/examples/cuda_check"
        pack sample "$target/release/sample"
        ;;
    products)
        cargo build --release -p cube-kernels --features cuda --example product_routines
        pack product_routines "$target/release/examples/product_routines"
        ;;
    *)
        echo "usage: scripts/gpu/stage.sh [train] [kernels] [generate] [products]"; exit 2
        ;;
esac
done
du -sh target/gpu
