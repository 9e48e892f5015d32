"""What PyTorch keeps for the backward pass of a training forward pass, per layer and token:
transformers' GPT2LMHeadModel (SDPA attention, as scripts/bench/train_baseline.py trains it)
from random weights, gpt2's width and heads over a vocabulary of 512, rows of 256 tokens.
Models of 1 and 3 layers differ only in their layers: half their difference is a layer's
share; one row and two differ only in their tokens, which splits that share into bytes a token
(activations) and bytes that do not grow with the rows.
Counted with autograd's saved-tensor hooks, each storage once and the parameters left out, so
no GPU is needed; which attention kernel SDPA picks (and so whether the time x time weights
are kept) depends on the device, and --device cuda adds torch.cuda.memory_allocated's count.
The Rust counterpart: cargo run --release -p gpt2 --features wgpu --example activation_memory

    python3 scripts/bench/activation_memory.py [--device cuda] [--breakdown]
"""
import argparse
from collections import Counter

import torch
from transformers import GPT2Config, GPT2LMHeadModel

TIME, VOCAB, WIDTH, HEADS = 256, 512, 768, 12


def kept(layers: int, rows: int, dropout: float, device: str):
    """Bytes saved for backward by one forward pass on `rows` rows and its loss, and those bytes
    by (shape, dtype); and on CUDA the allocator's growth over the pass."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=TIME, n_embd=WIDTH, n_layer=layers, n_head=HEADS,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0,
                        eos_token_id=0, attn_implementation="sdpa")
    model = GPT2LMHeadModel(config).to(device).train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    tokens = (torch.arange(rows * TIME) * 7_919 % VOCAB).reshape(rows, TIME).to(device)
    seen, by_shape = set(), Counter()

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            by_shape[(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))] += storage.nbytes()
        return tensor

    if device == "cuda":
        torch.cuda.synchronize()
    before = torch.cuda.memory_allocated() if device == "cuda" else 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(tokens, labels=tokens).loss
    allocated = torch.cuda.memory_allocated() - before if device == "cuda" else None
    loss.backward()
    return sum(by_shape.values()), by_shape, allocated


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--breakdown", action="store_true", help="a layer's saved tensors by shape, rows of two")
    args = parser.parse_args()
    print(f"bytes kept for the backward pass, PyTorch {torch.__version__} on {args.device} (SDPA): "
          f"gpt2's width {WIDTH} and {HEADS} heads, rows of {TIME}")
    for dropout in (0.0, 0.1):
        runs = {(layers, rows): kept(layers, rows, dropout, args.device) for layers in (1, 3) for rows in (1, 2)}

        def layer(rows, part):
            return (runs[3, rows][part] - runs[1, rows][part]) / 2

        per_token = (layer(2, 0) - layer(1, 0)) / TIME
        line = (f"  dropout {dropout}: a layer keeps {per_token:.0f} bytes a token ({per_token / (4 * WIDTH):.1f} f32 rows "
                f"of the width) and {(layer(1, 0) - per_token * TIME) / 2**20:.2f} MiB besides")
        if args.device == "cuda":
            allocated = (layer(2, 2) - layer(1, 2)) / TIME
            line += f"; allocated: {allocated:.0f} bytes a token and {(layer(1, 2) - allocated * TIME) / 2**20:.2f} MiB"
        print(line)
        if args.breakdown:
            shapes = runs[3, 2][1] - runs[1, 2][1]
            for (shape, dtype), nbytes in sorted(shapes.items(), key=lambda item: -item[1]):
                print(f"    {str(shape):<24}{dtype:<10}{nbytes / 2 / (2 * TIME):>8.0f} bytes a layer and token")


if __name__ == "__main__":
    main()
