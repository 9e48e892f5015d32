#!/usr/bin/env bash
# One prepared GPU check, run on a machine with an NVIDIA GPU and Python's torch + transformers
# (there is no Rust there). Stage everything here first with scripts/gpu/stage.sh, then run this
# script there with target/gpu carried along:
#   scripts/gpu/check.sh train [ARGS]   the train stage: CUDA vs CPU steps; tokens/s, MFU, first
#                                   step and peak memory at gpt2 4 x 1024 and the original's
#                                   gpt2-medium 1 x 550 x 16 micro-batches, f32 and bf16, next to
#                                   PyTorch f32 and bf16; gpt2-medium 1 x 1024's memory against 11
#                                   GB; where gpt2's step goes, kernel by kernel (ARGS go to
#                                   scripts/gpu/train_check.py, e.g. --checks, --limit). Within
#                                   the device's 10 minutes a call; the activations PyTorch keeps
#                                   for the backward pass are a call of their own:
#                                   python3 scripts/bench/activation_memory.py --device cuda
#   scripts/gpu/check.sh generate   CUDA vs CPU logits on the tiny fixture (forward pass and
#                                   decoding steps; bf16 weights against f32); generation tokens/s
#                                   and time to first token at gpt2 / gpt2-medium shapes in f32
#                                   and bf16, through the model and through the sample stage
#                                   itself (scripts/gpu/sample_stage.sh), next to transformers'
#                                   generate
#   scripts/gpu/check.sh kernels    cube-kernels' tests on CUDA, those staged (bf16 where wgpu's
#                                   runs take f16)
#   scripts/gpu/check.sh products [ARGS]   each of cubek's tensor-core product routines on gpt2's
#                                   training products (f32 as TF32, and bf16), then torch.matmul
#                                   on the same: the routine the model's products should take
#                                   (ARGS go to product_routines, e.g. --rows, --budget-s)
#   ROUTINES="a b" scripts/gpu/check.sh routines [ARGS]   the train stage with every product of
#                                   the model through each routine named (GPT2_PRODUCTS, names
#                                   as the products survey prints them): CUDA vs CPU steps and
#                                   gpt2 4 x 1024 in f32 and bf16 (ARGS go to train_check.py)
#   scripts/gpu/check.sh attention [ARGS]   the train stage with training's attention by each
#                                   route in ROUTES (GPT2_ATTENTION; default "flash-tensor-cores
#                                   products": the flash kernels' products on tensor cores; burn's
#                                   batched products on tensor cores, the scores made in full)
#                                   instead of the flash kernels on the FP32 units:
#                                   CUDA vs CPU steps, gpt2 4 x 1024 in f32 and bf16, and gpt2's
#                                   f32 step kernel by kernel, beside `train`'s (ARGS as there)
# Results go to stdout and, for train, to $OUT/train.jsonl.
set -uo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
out=${OUT:-$(mktemp -d)}
# The binaries travel compressed: unpacked here (Python's lzma: no xz tool needed).
bin=$(mktemp -d)
for packed in target/gpu/*.xz; do
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$packed" "$bin/$(basename "$packed" .xz)" && chmod +x "$bin/$(basename "$packed" .xz)"
done
status=0
case "${1:-train}" in
    train)
        shift
        python3 scripts/gpu/train_check.py --bin "$bin/train" --data target/gpu/data --out "$out" \
            --precisions f32,bf16 --pytorch gpt2:1024:4,gpt2-medium:550:1x16 "$@" || status=$?
        ;;
    kernels)
        for test in "$bin"/kernels-*; do
            echo "== ${test#"$bin"/kernels-}"
            # A failed assert_eq! prints both sides whole: lines cut short. Every NVIDIA card the
            # checks run on has tensor cores: their kernels' tests must not pass untested.
            CUBE_KERNELS_TENSOR_CORES=required timeout 120 "$test" --nocapture --test-threads=1 2>&1 |
                cut -c1-400 || status=$?
        done
        ;;
    generate)
        # Within the device's 10 minutes a call.
        timeout 240 "$bin/cuda_check" || status=$?
        SAMPLE="$bin/sample" timeout 160 scripts/gpu/sample_stage.sh || status=$?
        timeout 190 python3 scripts/bench/generate_baseline.py --device cuda --models gpt2,gpt2-medium \
            --dtypes f32,bf16 --first-token || status=$?
        ;;
    products)
        shift
        timeout 420 "$bin/product_routines" --budget-s 360 "$@" || status=$?
        timeout 60 python3 scripts/bench/products_baseline.py || status=$?
        ;;
    routines)
        shift
        for routine in ${ROUTINES:-default double-cyclic-cmma specialized-tma-cmma}; do
            python3 scripts/gpu/train_check.py --bin "$bin/train" --data target/gpu/data --out "$out" \
                --precisions f32,bf16 --products "$routine" --checks agree,gpt2:1024:4 --limit 40 "$@" || status=$?
        done
        ;;
    attention)
        shift
        for route in ${ROUTES:-flash-tensor-cores products}; do
            python3 scripts/gpu/train_check.py --bin "$bin/train" --data target/gpu/data --out "$out" \
                --precisions f32,bf16 --attention "$route" --checks agree,gpt2:1024:4,profile:gpt2:1024:4:f32 \
                --limit 40 "$@" || status=$?
        done
        ;;
    *)
        echo "usage: scripts/gpu/check.sh [train|kernels|generate|products|routines|attention]"; exit 2
        ;;
esac
exit $status
