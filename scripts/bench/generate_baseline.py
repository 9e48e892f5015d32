"""transformers baseline for generation speed: greedy decoding at the gpt2 (124M) shapes (random
weights), batch 1 and 8, 256 new tokens, with the KV cache (and without, with --no-cache).
Prints one line per run.

    python3 scripts/bench/generate_baseline.py --device cuda
"""
import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--no-cache", action="store_true", help="also time generation without the KV cache")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval().to(args.device)
    runs = [(1, True), (1, True), (8, True)]  # the first run is a warm-up
    if args.no_cache:
        runs += [(1, False), (8, False)]
    for batch, cached in runs:
        prompt = torch.full((batch, 8), 464, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0,
                           use_cache=cached)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        rate = batch * args.new_tokens / (time.perf_counter() - start)
        cache = "KV cache" if cached else "no cache"
        print(f"transformers gpt2 124M shapes, f32, {cache}, {args.new_tokens} new tokens, batch {batch}: {rate:.1f} tokens/s")


if __name__ == "__main__":
    main()
