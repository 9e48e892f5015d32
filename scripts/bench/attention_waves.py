"""How long flash attention's three kernels take, in tile steps, when an H100/H200 starts their
cubes in one order or another: a model, not a measurement. Under causality a cube's block of
rows works on 1 to time / 32 tiles; the card starts cubes in launch order on the slots that
free up (warps an SM keeps resident, from the registers each kernel takes: ptxas for sm_90a,
BENCHMARKS.md's registers section, × 132 SMs), each tile step taken to cost the same.

    python3 scripts/bench/attention_waves.py [--batch 4] [--heads 12] [--time 1024] [--sms 132]
"""

import argparse
import heapq

TILE = 32


def makespan(steps: list[int], slots: int) -> int:
    """The last cube's end when each cube starts, in order, on the first slot to free up."""
    free = [0] * slots
    end = 0
    for length in steps:
        start = heapq.heappop(free)
        heapq.heappush(free, start + length)
        end = max(end, start + length)
    return end


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--time", type=int, default=1024)
    parser.add_argument("--sms", type=int, default=132)
    args = parser.parse_args()
    tiles = args.time // TILE
    # (kernel, rows a cube, warps an SM before / after 2026-12-04's parts of four, tile steps of block b)
    kernels = [
        ("forward", 32, (12, 8), lambda b: b + 1),
        ("queries' gradient", 16, (16, 12), lambda b: (b * 16 + 15) // TILE + 1),
        ("keys' and values' gradient", 16, (11, 10), lambda b: tiles - (b * 16) // TILE),
    ]
    print("| kernel | warps an SM | bound | blocks in order | longest first |")
    print("|---|---:|---:|---:|---:|")
    for name, rows, warps, steps in kernels:
        blocks = range(args.time // rows)
        in_order = [steps(b) for _ in range(args.batch * args.heads) for b in blocks]
        longest_first = sorted(in_order, reverse=True)
        for resident in warps:
            slots = args.sms * resident
            bound = max(max(in_order), sum(in_order) / slots)
            print(f"| {name} | {resident} | {bound:.1f} | {makespan(in_order, slots)} | {makespan(longest_first, slots)} |")


if __name__ == "__main__":
    main()
