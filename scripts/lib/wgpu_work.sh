# Sourced by the scripts that run the stages on burn's wgpu backend without a GPU
# (scripts/checks/wgpu_parity.sh, scripts/bench/{launches,host_ops,sample_launches,sample_pace}.sh).
source scripts/lib/stage_work.sh
# wgpu, looking for adapters, has Mesa try a Wayland display, whose client library looks for its
# socket in XDG_RUNTIME_DIR: unset (as on a server), every run printed "error: XDG_RUNTIME_DIR is
# invalid or not set in the environment", which is no error here.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# wgpu_work SEQ_LEN LAYERS HEADS DROPOUT [STAGE...]: build prepare and the STAGEs (default:
# train) with the development feature `wgpu`, then `stage_work` (the demo jokes and a model
# config in a fresh $work). Sets $target, the cargo target directory.
wgpu_work() {
    local seq_len=$1 layers=$2 heads=$3 dropout=$4
    shift 4
    local stages=("${@:-train}") build=(-p prepare) stage
    for stage in "${stages[@]}"; do build+=(-p "$stage" --features "$stage/wgpu"); done
    target=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build --release --quiet "${build[@]}"
    stage_work "$target/release/prepare" "$seq_len" "$layers" "$heads" "$dropout"
}

# log_launches: CubeCL, started in $work, logs one line per kernel it launches to
# $work/kernels.log (cubecl.toml `[profiling.logger] level = "minimal"`).
log_launches() {
    printf '[profiling.logger]\nlevel = "minimal"\nfile = "kernels.log"\n' > "$work/cubecl.toml"
}

# kernel_names OUT: the kernels of $work/kernels.log, one name a launch, into $work/OUT; the
# log is removed for the next run.
kernel_names() {
    # "Executing ElemwiseFuse | WgpuRuntime ..." -> ElemwiseFuse
    sed -n 's/.*Executing \([^ |]*\).*/\1/p' "$work/kernels.log" > "$work/$1"
    rm "$work/kernels.log"
}
