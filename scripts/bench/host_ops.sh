#!/usr/bin/env bash
# Operations the host registers with burn's fusion per training step, counted without a GPU:
# the second CPU-measurable figure of the GPU training issue, beside scripts/bench/launches.sh.
# Every tensor operation of a step on CUDA (and wgpu) goes through burn-fusion's stream on the
# host, a view or a tensor's release as much as a kernel, whether or not a kernel comes of it:
# on the H200 in November a step was bound by that host work, not by the card.
#
# The count is a uprobe on burn-fusion's `MultiStream::register`, which every registered
# operation passes through, read by `perf stat` (`apt-get install linux-perf`; run as root,
# with tracefs, which the script mounts if it is missing). Same model and runs as
# launches.sh: the train stage built with the development feature `wgpu` on Mesa's software
# Vulkan driver, gpt2-medium's 24 layers and 16 heads, 64 wide, dropout 0.1, rows of 2 x 128.
#   scripts/bench/host_ops.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/wgpu_work.sh
wgpu_work 128 24 16 0.1
binary=$target/release/train

[ -e /sys/kernel/tracing/uprobe_events ] || mount -t tracefs nodev /sys/kernel/tracing
# A uprobe takes a file offset: the symbol's address less its executable segment's start in
# memory, plus that segment's start in the file.
read -r segment_offset segment_address < <(readelf -lW "$binary" |
    awk '$1 == "LOAD" && / R E / { print $2, $3; exit }')
offsets=$(nm "$binary" | awk '/burn_fusion6stream5multi20MultiStream.*8register17h/ { print $1 }' |
    while read -r address; do printf '0x%x\n' $(( 0x$address - segment_address + segment_offset )); done)
[ -n "$offsets" ] || { echo "no MultiStream::register in $binary" >&2; exit 1; }
# The probes go when the script ends, however it ends; any left by a run that was killed go
# first (a probe's name cannot be added twice).
remove_probes() { perf probe -q -d "probe_train:host_op_*" 2> /dev/null || true; }
trap 'remove_probes; rm -rf "$work"' EXIT
remove_probes
events=()
n=0
for offset in $offsets; do
    n=$((n + 1))
    perf probe -q -x "$binary" -a "host_op_$n=$offset"
    events+=(-e "probe_train:host_op_$n")
done

# registered STEPS GRAD_ACCUM: the operations a run registers.
registered() {
    (cd "$work" && perf stat -x, "${events[@]}" -o perf.csv -- "$binary" --data data \
        --init random:model.json --out "run-$1-$2" --device wgpu --micro-batch 2 --grad-accum "$2" \
        --max-steps "$1" --eval-every 0 --save-every 1000 --seed 0 > /dev/null 2>&1 &&
        awk -F, '/probe_train:host_op_/ { total += $1 } END { print total }' perf.csv)
}
one=$(registered 1 1) three=$(registered 3 1) accum=$(registered 3 4)
echo "operations registered with burn's fusion, train --device wgpu: 24 layers, 16 heads, rows 2 x 128"
echo "  per optimizer step with one micro-batch: $(( (three - one) / 2 ))"
echo "  per extra micro-batch (forward + backward): $(( (accum - three) / 9 ))"
echo "  per optimizer step at the reddit pipeline's 16 micro-batches: $(( (three - one) / 2 + 15 * (accum - three) / 9 ))"
