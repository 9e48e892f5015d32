# Sourced by the scripts that run the stages on `--device cuda-compile` (crates/cuda-compile):
# exports CUDA_PATH (a CUDA toolkit, or else PyTorch's nvidia/cu13 wheels: nvidia-cuda-nvrtc,
# and nvidia-cuda-crt's headers, `pip install -r scripts/requirements.txt`) and puts its NVRTC
# on LD_LIBRARY_PATH; stops with what to install if they are not there.
if [ -z "${CUDA_PATH:-}" ]; then
    CUDA_PATH=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))' 2> /dev/null) || {
        echo "no NVRTC: set CUDA_PATH to a CUDA toolkit, or pip install -r scripts/requirements.txt" >&2
        exit 1
    }
fi
for needed in include/cuda_runtime.h include/crt/mma.h; do
    [ -e "$CUDA_PATH/$needed" ] || { echo "$CUDA_PATH has no $needed: pip install -r scripts/requirements.txt" >&2; exit 1; }
done
export CUDA_PATH LD_LIBRARY_PATH=$CUDA_PATH/lib:$CUDA_PATH/lib64:${LD_LIBRARY_PATH:-}
