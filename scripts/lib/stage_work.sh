# Sourced by the scripts that run the stages on a small model over the demo jokes
# (scripts/lib/wgpu_work.sh, scripts/checks/cuda_compile.sh).
#
# stage_work PREPARE SEQ_LEN LAYERS HEADS DROPOUT: in a fresh $work (removed on exit), the demo
# jokes prepared at SEQ_LEN tokens by the binary PREPARE ($work/data) and a GPT-2 config over
# the demo's 512-token vocabulary, 64 wide or the next multiple of HEADS ($work/model.json);
# with VOCABULARY=gpt2, over GPT-2's own 50,257 tokens; with WIDTH=N, N wide (gpt2-xl: 1600
# with 25 heads).
stage_work() {
    local prepare=$1 seq_len=$2 layers=$3 heads=$4 dropout=$5
    local width=${WIDTH:-$(( (64 + heads - 1) / heads * heads ))} tokenizer=data/demo/tokenizer.json vocab=512 eos=0
    if [ "${VOCABULARY:-demo}" = gpt2 ]; then tokenizer=data/tokenizers/gpt2/tokenizer.json vocab=50257 eos=50256; fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$prepare" --source data/demo/jokes.txt --format text --tokenizer "$tokenizer" \
        --template '{text}<|endoftext|>' --seq-len "$seq_len" --out "$work/data" > /dev/null
    cat > "$work/model.json" <<JSON
{"model_type": "gpt2", "activation_function": "gelu_new", "vocab_size": $vocab, "n_positions": $seq_len,
 "n_embd": $width, "n_layer": $layers, "n_head": $heads, "layer_norm_epsilon": 1e-05, "embd_pdrop": $dropout,
 "attn_pdrop": $dropout, "resid_pdrop": $dropout, "bos_token_id": $eos, "eos_token_id": $eos}
JSON
}
