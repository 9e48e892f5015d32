#!/usr/bin/env bash
# What `--precision bf16`'s matrix products cost an H100/H200 in registers, without a GPU: one
# optimizer step of gpt2 (random weights) at 4 rows of 1024 tokens on `--device cuda-compile`,
# its kernels' PTX kept (`CUDA_COMPILE_DUMP`) and assembled for sm_90a by ptxas, then each
# variant of the products' kernel (`MatmulEntry`) on a line: registers, bytes spilled, local-
# memory instructions, units a cube, warps an SM keeps resident (scripts/bench/kernel_registers.py).
# Which blueprint cubek infers depends on the products' shapes: this is the issue's shape.
#   scripts/bench/bf16_products.sh
# ptxas and cuobjdump as for scripts/bench/kernel_registers.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/cuda_compile_rows.sh
dump="$work/dump"
mkdir "$dump"
(cd "$work" && CUDA_COMPILE_DUMP="$dump" "$target/release/train" --data data-1024 --init random:gpt2 \
    --device cuda-compile --precision bf16 --micro-batch 4 --grad-accum 1 --max-steps 1 --out run > train.log 2>&1) ||
    { cat "$work/train.log"; exit 1; }
grep "kernels compiled" "$work/train.log"
python3 scripts/bench/kernel_registers.py "$dump" "$CUDA_PATH/bin" MatmulEntry
