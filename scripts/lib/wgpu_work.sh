# Sourced by the scripts that run the stages on burn's wgpu backend without a GPU
# (scripts/checks/wgpu_parity.sh, scripts/bench/launches.sh, scripts/bench/sample_launches.sh).
#
# wgpu_work SEQ_LEN LAYERS HEADS DROPOUT [STAGE...]: build prepare and the STAGEs (default:
# train) with the development feature `wgpu`; in a fresh $work (removed on exit), the demo
# jokes prepared at SEQ_LEN tokens ($work/data) and a GPT-2 config over the demo's 512-token
# vocabulary, 64 wide or the next multiple of HEADS ($work/model.json); with VOCABULARY=gpt2,
# over GPT-2's own 50,257 tokens. Sets $target, the cargo target directory.
wgpu_work() {
    local seq_len=$1 layers=$2 heads=$3 dropout=$4
    shift 4
    local stages=("${@:-train}") build=(-p prepare) stage width=$(( (64 + heads - 1) / heads * heads ))
    local tokenizer=data/demo/tokenizer.json vocab=512 eos=0
    if [ "${VOCABULARY:-demo}" = gpt2 ]; then tokenizer=data/tokenizers/gpt2/tokenizer.json vocab=50257 eos=50256; fi
    for stage in "${stages[@]}"; do build+=(-p "$stage" --features "$stage/wgpu"); done
    target=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build --release --quiet "${build[@]}"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$target/release/prepare" --source data/demo/jokes.txt --format text --tokenizer "$tokenizer" \
        --template '{text}<|endoftext|>' --seq-len "$seq_len" --out "$work/data" > /dev/null
    cat > "$work/model.json" <<JSON
{"model_type": "gpt2", "activation_function": "gelu_new", "vocab_size": $vocab, "n_positions": $seq_len,
 "n_embd": $width, "n_layer": $layers, "n_head": $heads, "layer_norm_epsilon": 1e-05, "embd_pdrop": $dropout,
 "attn_pdrop": $dropout, "resid_pdrop": $dropout, "bos_token_id": $eos, "eos_token_id": $eos}
JSON
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
