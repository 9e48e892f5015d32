# Sourced by the scripts that run the train stage on burn's wgpu backend without a GPU
# (scripts/checks/wgpu_parity.sh, scripts/bench/launches.sh).
#
# wgpu_work SEQ_LEN LAYERS HEADS DROPOUT: build prepare and train with the development feature
# `wgpu`; in a fresh $work (removed on exit), the demo jokes prepared at SEQ_LEN tokens
# ($work/data) and a 64-wide GPT-2 config over the demo's 512-token vocabulary
# ($work/model.json). Sets $target, the cargo target directory.
wgpu_work() {
    local seq_len=$1 layers=$2 heads=$3 dropout=$4
    target=${CARGO_TARGET_DIR:-$PWD/target}
    cargo build --release --quiet -p prepare -p train --features train/wgpu
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$target/release/prepare" --source data/demo/jokes.txt --format text --tokenizer data/demo/tokenizer.json \
        --template '{text}<|endoftext|>' --seq-len "$seq_len" --out "$work/data" > /dev/null
    cat > "$work/model.json" <<JSON
{"model_type": "gpt2", "activation_function": "gelu_new", "vocab_size": 512, "n_positions": $seq_len,
 "n_embd": 64, "n_layer": $layers, "n_head": $heads, "layer_norm_epsilon": 1e-05, "embd_pdrop": $dropout,
 "attn_pdrop": $dropout, "resid_pdrop": $dropout, "bos_token_id": 0, "eos_token_id": 0}
JSON
}
