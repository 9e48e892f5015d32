"""transformers baseline for generation speed: greedy decoding at the gpt2 (124M) shapes (random
weights; also gpt2-medium's with --models), batch 1 and 8, 256 new tokens from an 8-token prompt,
with the KV cache (and without, with --no-cache); with --first-token, also the time from a
64-token prompt to its first new token; with --dtypes f32,bf16, also with the model in bf16
(`torch_dtype=torch.bfloat16`, as a user samples in bf16). Prints one line per run.

    python3 scripts/bench/generate_baseline.py --device cuda --models gpt2,gpt2-medium --dtypes f32,bf16 --first-token
"""
import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

SIZES = {"gpt2": ("124M", {}), "gpt2-medium": ("355M", {"n_embd": 1024, "n_layer": 24, "n_head": 16})}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def timed(device: str, run) -> float:
    """Seconds `run` takes, the device's queue drained before and after."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="gpt2", help="comma-separated: gpt2, gpt2-medium")
    parser.add_argument("--dtypes", default="f32", help="comma-separated: f32, bf16")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--no-cache", action="store_true", help="also time generation without the KV cache")
    parser.add_argument("--first-token", action="store_true", help="also time a 64-token prompt's first token")
    args = parser.parse_args()
    for name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            run_model(args, name, dtype)


def run_model(args: argparse.Namespace, name: str, dtype: str) -> None:
    """Every run of one model shape in one dtype."""
    size, shape = SIZES[name]
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**shape)).eval().to(args.device, DTYPES[dtype])
    runs = [(1, True), (1, True), (8, True)]  # the first run is a warm-up
    if args.no_cache:
        runs += [(1, False), (8, False)]
    for batch, cached in runs:
        prompt = torch.full((batch, 8), 464, device=args.device)
        seconds = timed(args.device, lambda: model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens, pad_token_id=0, use_cache=cached))
        cache = "KV cache" if cached else "no cache"
        print(f"transformers {name} {size} shapes, {dtype}, {cache}, {args.new_tokens} new tokens, batch {batch}: "
              f"{batch * args.new_tokens / seconds:.1f} tokens/s")
    for batch in [1, 8] if args.first_token else []:
        prompt = torch.full((batch, 64), 464, device=args.device)
        first = lambda: model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                       max_new_tokens=1, pad_token_id=0)
        timed(args.device, first)  # warm-up
        print(f"transformers {name} {size} shapes, {dtype}, batch {batch}: first token after a 64-token prompt "
              f"{1e3 * timed(args.device, first):.1f} ms")


if __name__ == "__main__":
    main()
