"""Where a step's time goes, kernel by kernel, from CubeCL's profiling logger (cubecl.toml
`[profiling.logger] level = "basic"`), which waits for the device before and after every kernel
and logs the time between, a kernel's run plus its launch: "| 1.234ms    | name | ...".

Two runs that differ only in their number of steps (optimizer steps, generated tokens) give a
step's kernels as the difference of their logs over the difference of their steps: the start,
loading or initialising the weights and whatever ends the run cancel out, and so, roughly, do
the kernels' first launches (compiled, or loaded from the kernel cache: keep it warm). At level
"full" each launch's entry ends with its grid ("} CubeCount (6283, 1, 1)"), and a kernel is
counted by name and grid: one kernel's launches of different sizes apart (the few-row kernel's
products of a layer and the LM head's).
Used by scripts/gpu/train_check.py and scripts/gpu/sample_stage.sh:

    python3 scripts/lib/cubecl_profile.py SHORT_LOG LONG_LOG STEPS    # prints one JSON line
"""
import json
import pathlib
import sys

UNITS_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def kernel_totals(log: pathlib.Path) -> dict[str, list[float]]:
    """Milliseconds and launches by kernel name (its path and generics left out), and grid where
    the log gives one."""
    totals: dict[str, list[float]] = {}
    pending: tuple[str, float] | None = None

    def count(name: str, ms: float) -> None:
        total = totals.setdefault(name, [0.0, 0])
        total[0] += ms
        total[1] += 1

    for line in open(log, errors="replace") if log.exists() else []:
        if pending and "} CubeCount (" in line:
            count(f"{pending[0]} {line.split('CubeCount', 1)[1].strip()}", pending[1])
            pending = None
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) < 3 or not fields[1]:
            continue
        duration, name = fields[1], fields[2].split(": ")[0].split("<")[0].split("::")[-1]
        number = duration.rstrip("nµusm")
        try:
            ms = float(number) * UNITS_MS[duration[len(number):]]
        except (KeyError, ValueError):
            continue
        if pending:
            count(*pending)
        pending = (name, ms)
    if pending:
        count(*pending)
    return totals


def kernel_times(short: pathlib.Path, long: pathlib.Path, steps: int, top: int = 15) -> dict:
    """Milliseconds and launches a step by kernel, the largest first: the difference of a run's
    log and that of a run `steps` steps longer, over `steps`."""
    a, b = kernel_totals(short), kernel_totals(long)
    step = {name: ((b[name][0] - a.get(name, [0.0, 0])[0]) / steps, (b[name][1] - a.get(name, [0.0, 0])[1]) / steps) for name in b}
    step_ms = sum(ms for ms, _ in step.values())
    kernels = sorted(step.items(), key=lambda item: -item[1][0])[:top]
    return {"ms_a_step": round(step_ms, 3), "launches_a_step": round(sum(count for _, count in step.values()), 1),
            "kernels": [{"kernel": name, "ms_a_step": round(ms, 4), "launches_a_step": round(count, 1),
                         "share": round(ms / step_ms, 3) if step_ms else None} for name, (ms, count) in kernels]}


if __name__ == "__main__":
    short, long, steps = sys.argv[1:]
    print(json.dumps(kernel_times(pathlib.Path(short), pathlib.Path(long), int(steps))))
