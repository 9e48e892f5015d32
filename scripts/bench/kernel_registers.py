"""Registers, spills and occupancy of each CUDA kernel, read from the PTX that
`--device cuda-compile` wrote (CUDA_COMPILE_DUMP) and assembled for an H100/H200 by ptxas.

    python3 scripts/bench/kernel_registers.py DUMP_DIR CUDA_BIN_DIR [KERNEL [--loops]]

One line a kernel type, for its worst variant (the most bytes spilled, then the most
registers): registers a unit, bytes spilled to local memory (stores / loads), local-memory
instructions (`LDL`/`STL` in the SASS), units a cube, shared memory a cube, and the warps an
SM can keep resident (of 64), with what limits them. Spills put a kernel's loop on local memory; few resident warps leave
little to hide latency with. With KERNEL (a kernel type, `MatmulEntry`), one line each of its
variants instead, the worst first, with its busiest loop: the loop of the SASS with the most
multiply-adds (`FFMA`), the innermost of equals, its instructions (what a kernel bound by
issuing instructions pays for a pass of it) and the cycles a pass takes one warp alone (what a
kernel with too few warps to interleave pays: `cycles_alone`). With `--loops` after KERNEL,
every loop of each variant instead, innermost first: its instructions and the global loads
(`LDG`), shared-memory stores and loads (`STS`, `LDS`) and multiply-adds among them, to see
what a kernel's outer loops (a tile's loads) cost beside its busiest one.
"""

import collections
import pathlib
import re
import subprocess
import sys

# Compute capability 9.0 (H100, H200): per SM.
REGISTERS = 65536
REGISTER_GRANULE = 256  # registers are given to a warp in blocks of this many
SHARED_BYTES = 233472  # 228 KiB, 1 KiB of it kept by the driver for each resident cube
SHARED_RESERVED = 1024
MAX_WARPS = 64
MAX_CUBES = 32


def assemble(ptx: pathlib.Path, bin_dir: pathlib.Path) -> dict:
    cubin = ptx.with_suffix(".cubin")
    info = subprocess.run(
        [bin_dir / "ptxas", "-arch=sm_90a", "-v", ptx, "-o", cubin], capture_output=True, text=True, check=True
    ).stderr
    sass = subprocess.run([bin_dir / "cuobjdump", "-sass", cubin], capture_output=True, text=True, check=True).stdout
    source = ptx.with_suffix(".cu").read_text()
    text = ptx.read_text()
    units = re.search(r"\.(?:maxntid|reqntid)\s+(\d+),\s*(\d+),\s*(\d+)", text)
    return {
        "registers": int(re.search(r"Used (\d+) registers", info).group(1)),
        "spill_stores": int(re.search(r"(\d+) bytes spill stores", info).group(1)),
        "spill_loads": int(re.search(r"(\d+) bytes spill loads", info).group(1)),
        "local_instructions": len(re.findall(r"\b(?:LDL|STL)\b", sass)),
        "units": units and int(units.group(1)) * int(units.group(2)) * int(units.group(3)),
        "shared": sum(int(size) for size in re.findall(r"Shared array size: \d+, (\d+) bytes", source)),
        "busiest_loop": busiest_loop(sass),
        "loops": loop_rows(sass),
    }


def loops(sass: str) -> list[list[list[str]]]:
    """Each loop's instructions, split into words: a loop is a backward branch and the
    instructions from its target to it. In the SASS's order, so an inner loop before its outer."""
    instructions = [
        (int(address, 16), text.split())
        for address, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", sass)
    ]
    found = []
    for end, words in instructions:
        target = re.fullmatch(r"0x([0-9a-f]+)", words[-1]) if opcode(words) == "BRA" else None
        if target and int(target.group(1), 16) < end:
            found.append([w for a, w in instructions if int(target.group(1), 16) <= a <= end])
    return found


def busiest_loop(sass: str) -> dict:
    """The loop with the most `FFMA`s, the shortest of equals: its instructions, multiply-adds,
    and the cycles a pass takes one warp alone (`cycles_alone`)."""
    counted = [([opcode(w) for w in body].count("FFMA"), -len(body), body) for body in loops(sass)]
    if not counted:
        return {"instructions": 0, "fmas": 0, "cycles_alone": 0}
    fmas, _, body = max(counted, key=lambda loop: loop[:2])
    return {"instructions": len(body), "fmas": fmas, "cycles_alone": cycles_alone(body)}


def loop_rows(sass: str) -> list[str]:
    """A table row a loop (`--loops`): instructions, then global loads, shared-memory stores and
    loads, and multiply-adds among them."""
    rows = []
    for n, body in enumerate(loops(sass)):
        codes = collections.Counter(opcode(words) for words in body)
        counts = " | ".join(str(codes[code]) for code in ("LDG", "STS", "LDS", "FFMA"))
        rows.append(f"| {n} | {len(body)} | {counts} |")
    return rows


def opcode(words: list[str]) -> str:
    return (words[1] if words[0].startswith("@") else words[0]).split(".")[0]


# Cycles from an instruction's issue until what it writes can be read, roughly as measured on
# Hopper; the rest 4 (the integer and floating-point pipes).
LATENCY = {"MUFU": 18, "SHFL": 27, "LDS": 30, "LDC": 30, "S2R": 20, "LDG": 500}
# Opcodes whose first two operands are both written: a predicate and then a register (`SHFL`),
# or two predicates (`FSETP P1, PT, ...`).
WRITES_TWO = {"SHFL", "FSETP", "ISETP", "DSETP", "PLOP3", "UISETP"}
WRITES_NONE = {"STS", "STG", "STL", "ST", "RED", "BRA", "BSSY", "BSYNC", "BAR", "EXIT", "NOP", "WARPSYNC"}


def cycles_alone(body: list[list[str]], passes: int = 3) -> int:
    """Cycles a pass of a loop takes one warp with the SM to itself: each instruction issues in
    order, a cycle after the one before and once the registers it reads are written (fixed
    latencies, `LATENCY`); every branch inside falls through, so both sides of an `if` count.
    The last of a few passes, once the values carried from pass to pass have settled. Below
    `instructions × warps a scheduler keeps`, a loop is bound by issuing; above, by waiting."""
    ready: dict[str, int] = collections.defaultdict(int)
    clock = start = 0
    for _ in range(passes):
        start = clock
        for words in body:
            code = opcode(words)
            operands = " ".join(words[1:] if not words[0].startswith("@") else words[2:]).split(",")
            read = registers(words[0]) if words[0].startswith("@") else []
            written = []
            if code not in WRITES_NONE and operands[0]:
                count = 2 if code in WRITES_TWO else 1
                size = {"64": 2, "128": 4}.get(next(iter(re.findall(r"\.(64|128)\b", words[1 if read else 0])), ""), 1)
                for operand in operands[:count]:
                    written += [wide for name in registers(operand) for wide in widen(name, size)]
                operands = operands[count:]
            read += [name for operand in operands for name in registers(operand)]
            issue = max([clock] + [ready[name] for name in read])
            for name in written:
                ready[name] = issue + LATENCY.get(code, 4)
            clock = issue + 1
    return clock - start


def registers(operand: str) -> list[str]:
    """The registers and predicates an operand names (not the zero register or true predicate)."""
    return re.findall(r"\b(U?R\d+|U?P\d)\b", operand.replace(".reuse", ""))


def widen(name: str, size: int) -> list[str]:
    """A register and those after it that a load of `size` words writes."""
    if size == 1 or not name.startswith("R"):
        return [name]
    return [f"R{int(name[1:]) + n}" for n in range(size)]


def resident_warps(kernel: dict) -> tuple[int, str]:
    """Warps an SM keeps resident, and what limits them."""
    units = kernel["units"]
    if not units:
        return 0, "units unknown"
    warps = -(-units // 32)
    per_warp = -(-kernel["registers"] * 32 // REGISTER_GRANULE) * REGISTER_GRANULE
    limits = {
        "registers": REGISTERS // (per_warp * warps),
        "shared memory": SHARED_BYTES // (kernel["shared"] + SHARED_RESERVED),
        "cubes": MAX_CUBES,
        "warps": MAX_WARPS // warps,
    }
    limit = min(limits, key=limits.get)
    return limits[limit] * warps, limit


def severity(kernel: dict) -> tuple[int, int]:
    """How badly a kernel fits its registers: bytes spilled, then registers used."""
    return kernel["spill_stores"], kernel["registers"]


def row(name: str, count: int, kernel: dict, loop: bool = False) -> str:
    warps, limit = resident_warps(kernel)
    line = (
        f"| {name} | {count} | {kernel['registers']} | {kernel['spill_stores']} / "
        f"{kernel['spill_loads']} | {kernel['local_instructions']} | {kernel['units']} "
        f"| {kernel['shared']:,} | {warps}, {limit} |"
    )
    if loop:
        busiest = kernel["busiest_loop"]
        a_scheduler = warps / 4
        bound = "waits" if busiest["cycles_alone"] > busiest["instructions"] * a_scheduler else "issue"
        line += f" {busiest['instructions']} / {busiest['fmas']} | {busiest['cycles_alone']}, {bound} |"
    return line


def main() -> None:
    if len(sys.argv) not in (3, 4, 5) or (len(sys.argv) == 5 and sys.argv[4] != "--loops"):
        sys.exit("usage: kernel_registers.py DUMP_DIR CUDA_BIN_DIR [KERNEL [--loops]]")
    dump, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    only = sys.argv[3] if len(sys.argv) > 3 else None
    every_loop = len(sys.argv) == 5
    by_type = collections.defaultdict(list)
    for ptx in sorted(dump.glob("*.ptx")):
        name = ptx.name.rsplit("-", 1)[0].split(".")[-1]
        if only in (None, name):
            by_type[name].append(assemble(ptx, bin_dir))
    header = "| kernel | variants | registers | spilled (B, stores / loads) | LDL + STL | units | shared (B) | warps resident, limit |"
    if only and every_loop:
        for n, kernel in enumerate(sorted(by_type[only], key=severity, reverse=True)):
            print(f"\n{only}, variant {n}: {kernel['registers']} registers\n")
            print("| loop | instructions | LDG | STS | LDS | FFMA |\n|---:|---:|---:|---:|---:|---:|")
            print("\n".join(kernel["loops"]))
        return
    if only:
        print(header + " busiest loop: instructions / FFMA | cycles a pass, one warp alone; bound |")
        print("|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
        for kernel in sorted(by_type[only], key=severity, reverse=True):
            print(row(only, 1, kernel, loop=True))
        return
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    worst = {name: max(variants, key=severity) for name, variants in by_type.items()}
    for name in sorted(worst, key=lambda name: severity(worst[name]), reverse=True):
        print(row(name, len(by_type[name]), worst[name]))


main()
