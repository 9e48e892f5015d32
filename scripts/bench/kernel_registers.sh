#!/usr/bin/env bash
# What each kernel of the CUDA path costs an H100/H200 in registers, without a GPU: the kernels
# scripts/checks/cuda_compile.sh compiles (training in f32 and bf16, evaluation, sampling),
# their PTX kept (`CUDA_COMPILE_DUMP`), assembled for sm_90a by ptxas and read back with
# cuobjdump (scripts/bench/kernel_registers.py): registers a unit, bytes spilled to local
# memory, and the warps an SM can keep resident.
#   scripts/bench/kernel_registers.sh [KERNEL [--loops]]
# With KERNEL (a kernel type, FewRowsLinearKernel), each of its variants and its busiest loop:
# instructions, multiply-adds, and cycles a pass for one warp alone, bound by issuing or waiting;
# with --loops, every loop of each variant (kernel_registers.py says what each column counts).
# ptxas, cuobjdump and the nvdisasm it runs come from CUDA_PATH's bin: a CUDA toolkit, or
# PyTorch's wheels with `pip install nvidia-cuda-nvcc nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`
# beside nvidia-cuda-nvrtc.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/nvrtc.sh
for tool in ptxas cuobjdump nvdisasm; do
    [ -x "$CUDA_PATH/bin/$tool" ] || {
        echo "no $CUDA_PATH/bin/$tool: pip install nvidia-cuda-nvcc nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm" >&2
        exit 1
    }
done
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
CUDA_COMPILE_DUMP=$dump scripts/checks/cuda_compile.sh > "$dump/compile.log" 2>&1 || { cat "$dump/compile.log"; exit 1; }
"$CUDA_PATH/bin/ptxas" --version | tail -1
python3 scripts/bench/kernel_registers.py "$dump" "$CUDA_PATH/bin" "$@"
