"""PyTorch baseline for training speed: the same training step the train stage runs
(GPT2LMHeadModel from random weights, AdamW, global-norm clipping, token-mean loss), on rows
of --seq tokens, --micro-batch rows per forward pass, --grad-accum passes per optimizer step.
Prints one JSON line per run: tokens/s, peak memory and model FLOPs utilisation (MFU).

    python3 scripts/bench/train_baseline.py --model gpt2 --seq 1024 --micro-batch 4 --dtype bf16
    python3 scripts/bench/train_baseline.py --model gpt2-medium --seq 550 --grad-accum 16   # the original's step
    python3 scripts/bench/train_baseline.py --matmul-peak     # the card's measured bf16 rate

MFU counts 6N + 12·L·T·d FLOPs per token (N: parameters without the position embedding; the
second term is attention's), over the card's measured dense bf16 matmul rate.
"""
import argparse
import json
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SIZES = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20), "gpt2-xl": (1600, 48, 25)}


def matmul_peak(dtype=torch.bfloat16, n=8192, repeats=50) -> float:
    """Achieved dense matmul FLOP/s on this card."""
    a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def flops_per_token(model, seq: int) -> float:
    config = model.config
    params = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    return 6 * params + 12 * config.n_layer * seq * config.n_embd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gpt2", choices=SIZES)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--grad-accum", type=int, default=1, help="forward and backward passes per optimizer step")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps (after 2 warm-up steps)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "f32"], help="bf16: autocast; f32: TF32 off")
    parser.add_argument("--peak-flops", type=float, help="the card's bf16 rate for MFU (default: measure it)")
    parser.add_argument("--matmul-peak", action="store_true", help="only measure and print the card's bf16 matmul rate")
    args = parser.parse_args()
    if args.matmul_peak:
        print(json.dumps({"bf16_matmul_tflops": matmul_peak() / 1e12, "card": torch.cuda.get_device_name()}))
        return

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    n_embd, n_layer, n_head = SIZES[args.model]
    config = GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, attn_implementation="sdpa")
    model = GPT2LMHeadModel(config).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, config.vocab_size, (args.micro_batch, args.seq), device="cuda")

    def step() -> None:
        # The train stage's loss: the mean over the step's tokens, so each pass's mean is
        # weighted by its share (equal here: every pass has the same rows).
        for _ in range(args.grad_accum):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
                logits = model(tokens).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, config.vocab_size), tokens[:, 1:].reshape(-1))
            (loss / args.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens_per_s = args.steps * args.grad_accum * args.micro_batch * args.seq / seconds
    peak = args.peak_flops or matmul_peak()
    print(json.dumps({
        "trainer": f"pytorch {args.dtype}" + (" autocast" if args.dtype == "bf16" else ""),
        "model": args.model, "seq": args.seq, "micro_batch": args.micro_batch, "grad_accum": args.grad_accum,
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(tokens_per_s * flops_per_token(model, args.seq) / peak, 4),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        # What the caching allocator held from the card: like for like with nvidia-smi's
        # figure for the train stage, whose memory pools also hold more than is in use.
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "card": torch.cuda.get_device_name(),
    }))


if __name__ == "__main__":
    main()
