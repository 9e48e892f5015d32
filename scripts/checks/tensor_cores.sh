#!/usr/bin/env bash
# The tensor-core kernels' tests without a GPU: the tests whose names hold "tensor_cores" (the
# kernels' own against burn's operations, and a training pass against the CPU), built for wgpu
# through CubeCL's SPIR-V compiler (features `vulkan`) and run on Mesa's software Vulkan driver
# from 26.x, which has cooperative matrices (f16 products, 8×8×8; bookworm's 22.3 has none,
# 25.0 none that CubeCL sees). That driver needs a newer system than this one: the tests run in
# a Debian sid root, made once with debootstrap (~300 MB, root and deb.debian.org needed) under
# target/ or TENSOR_CORES_ROOT, with this checkout bound in at its own path (for fixtures).
#   scripts/checks/tensor_cores.sh [PACKAGE/TEST...]
#       (default: cube-kernels/flash_attention gpt2/wgpu_tensor_core_attention)
# The tests fail where the driver lists no tensor cores (CUBE_KERNELS_TENSOR_CORES=required).
# Exits with 75 (EX_TEMPFAIL), having run nothing, where the root cannot be made.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${TENSOR_CORES_ROOT:-${CARGO_TARGET_DIR:-$PWD/target}/lavapipe-sid}
if [ $# -gt 0 ]; then tests=("$@"); else tests=(cube-kernels/flash_attention gpt2/wgpu_tensor_core_attention); fi

if [ ! -e "$root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" ]; then
    command -v debootstrap > /dev/null || apt-get install -y -qq debootstrap > /dev/null || exit 75
    rm -rf "$root.partial"
    debootstrap --variant=minbase --include=mesa-vulkan-drivers,libvulkan1 sid "$root.partial" \
        http://deb.debian.org/debian > "$root.log" 2>&1 || { tail -20 "$root.log"; exit 75; }
    mv "$root.partial" "$root"
fi
chroot "$root" dpkg-query -W mesa-vulkan-drivers

binaries=()
for test in "${tests[@]}"; do
    built=$(cargo test --profile gpu-check -p "${test%/*}" --features "${test%/*}/vulkan" --test "${test#*/}" \
        --no-run --message-format=json)
    mapfile -t -O "${#binaries[@]}" binaries < <(python3 -c '
import json, sys
for message in map(json.loads, sys.stdin):
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        print(message["executable"])' <<< "$built")
done

# The binaries run inside the root, copied there, from this checkout bound in at its own path
# (with /proc and /dev).
repo=$PWD
mkdir -p "$root$repo" "$root/tests"
cp "${binaries[@]}" "$root/tests/"
mounts=("$root/proc" "$root/dev" "$root$repo")
mountpoint -q "$root/proc" || mount --bind /proc "$root/proc"
mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
mountpoint -q "$root$repo" || mount --bind "$repo" "$root$repo"
trap 'umount "${mounts[@]}"' EXIT
for binary in "${binaries[@]}"; do
    # A wgpu thread overflows the default 2 MiB stack compiling these kernels' shaders.
    chroot "$root" env -i PATH=/usr/bin:/bin XDG_RUNTIME_DIR=/tmp RUST_MIN_STACK=67108864 \
        CUBE_KERNELS_TENSOR_CORES=required sh -c "cd '$repo' && '/tests/$(basename "$binary")' tensor_cores --nocapture"
done
