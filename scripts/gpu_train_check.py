"""The train stage on a GPU, next to PyTorch on the same card (run by scripts/gpu-check.sh).

1. CUDA vs CPU: a few identical training steps of the tiny fixture model on both devices;
   per-step losses side by side.
2. Speed and memory at the gpt2 and gpt2-medium shapes (random weights) on rows of 1024
   tokens: tokens/s (median over steps after the first two), MFU and the process's peak GPU
   memory (nvidia-smi), next to transformers + torch.optim.AdamW with bf16 autocast and SDPA,
   and in f32.
3. gpt2-medium, one row per forward pass, at 256, 512 and 1024 tokens: peak memory, and the
   longest row that fits in 11 GB from a quadratic fit (attention scores grow with T²).

Every run has a time limit; results are printed as JSON lines and written to $OUT/train.jsonl.

    python3 scripts/gpu_train_check.py --bin target/gpu/train --data target/gpu/data --out "$OUT"
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ROOT / "crates/gpt2/tests/fixtures/tiny"
GIB = 2**30
SIZES = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16)}


class Report:
    def __init__(self, out: pathlib.Path):
        self.file = open(out / "train.jsonl", "a")

    def __call__(self, record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


class PeakMemory(threading.Thread):
    """Polls nvidia-smi for the peak memory of one process."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_mib, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, _, used = line.partition(",")
                if pid.strip() == str(self.pid) and used.strip().isdigit():
                    self.peak_mib = max(self.peak_mib, int(used))
            time.sleep(0.2)


def metrics(run: pathlib.Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not line.get("eval"):
            lines.append(line)
    return lines


def train(binary: str, args: list[str], run: pathlib.Path, steps: int, limit: float) -> tuple[list[dict], int, str]:
    """Run the train stage until `steps` steps are in metrics.jsonl (then stop it), the run
    ends, or `limit` seconds pass. Returns the step lines, the peak memory (MiB) and a tail of
    the output with the seconds the first step took (kernel compilation shows there)."""
    log = open(run.parent / f"{run.name}.log", "w")
    process = subprocess.Popen([binary, *args, "--out", str(run)], stdout=log, stderr=subprocess.STDOUT)
    memory = PeakMemory(process.pid)
    if shutil.which("nvidia-smi"):
        memory.start()
    start, first_step = time.time(), None
    while process.poll() is None and len(metrics(run)) < steps and time.time() - start < limit:
        if first_step is None and metrics(run):
            first_step = time.time() - start
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
    process.wait()
    memory.running = False
    log.close()
    tail = f"first step after {first_step} s; " + (run.parent / f"{run.name}.log").read_text()[-600:]
    return metrics(run), memory.peak_mib, tail


def flops_per_token(model: str, seq: int) -> float:
    n_embd, n_layer, _ = SIZES[model]
    vocab = 50257
    params = vocab * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
    return 6 * params + 12 * n_layer * seq * n_embd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--data", required=True, type=pathlib.Path, help="holds tiny/, jokes-256/, jokes-512/, jokes-1024/")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--device", default="cuda", help="cpu only to try this script without a GPU")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    gpu = args.device.startswith("cuda")
    card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() if gpu else "cpu"

    # 1. CUDA vs CPU on the tiny model.
    same = ["--data", str(args.data / "tiny"), "--init", str(TINY), "--max-steps", "6", "--micro-batch", "2", "--grad-accum", "3",
            "--lr", "1e-3", "--warmup-steps", "0", "--dropout", "0", "--no-shuffle", "--eval-every", "0"]
    losses = {}
    for device in ["cpu", args.device]:
        lines, _, tail = train(args.bin, [*same, "--device", device], args.out / f"agree-{device}", 6, 120)
        losses[device] = [line["loss"] for line in lines]
        if len(lines) < 6:
            report({"check": "cuda_vs_cpu", "device": device, "error": tail})
    if len(losses["cpu"]) == len(losses[args.device]) == 6:
        worst = max(abs(a - b) / abs(a) for a, b in zip(losses["cpu"], losses[args.device]))
        report({"check": "cuda_vs_cpu", "card": card, "cpu_losses": losses["cpu"], "cuda_losses": losses[args.device], "max_relative_difference": worst})

    peak = None
    if gpu:
        out = subprocess.run([sys.executable, str(ROOT / "scripts/bench_train_baseline.py"), "--matmul-peak"], capture_output=True, text=True)
        peak = json.loads(out.stdout)["bf16_matmul_tflops"] * 1e12 if out.returncode == 0 else None
        report({"check": "card", "card": card, "bf16_matmul_tflops": peak and round(peak / 1e12, 1)})

    # 2 and 3. Speed and memory; PyTorch on the same shapes.
    runs = [("gpt2", 1024, 4, 7), ("gpt2-medium", 1024, 1, 6), ("gpt2-medium", 512, 1, 4), ("gpt2-medium", 256, 1, 4)]
    if not gpu:  # a trial of the script itself
        runs = [("gpt2", 256, 1, 3)]
    fit = []
    for model, seq, micro, steps in runs:
        name = f"{model}-seq{seq}-mb{micro}"
        common = ["--data", str(args.data / f"jokes-{seq}"), "--init", f"random:{model}", "--micro-batch", str(micro), "--grad-accum", "1",
                  "--max-steps", "1000", "--eval-every", "0", "--save-every", "0", "--device", args.device]
        lines, peak_mib, tail = train(args.bin, common, args.out / name, steps, 100)
        timed = [line["tokens_per_s"] for line in lines[2:]]
        record = {"trainer": "train stage f32", "model": model, "seq": seq, "micro_batch": micro, "card": card, "steps": len(lines),
                  "peak_gpu_gib": round(peak_mib / 1024, 2)}
        if timed:
            rate = statistics.median(timed)
            record["tokens_per_s"] = round(rate, 1)
            if peak:
                record["mfu"] = round(rate * flops_per_token(model, seq) / peak, 4)
        else:
            record["error"] = tail
        report(record)
        if micro == 1 and model == "gpt2-medium" and peak_mib:
            fit.append((seq, peak_mib / 1024))
        if gpu:
            dtypes = ["bf16", "f32"] if model == "gpt2" else ["bf16"]
            for dtype in dtypes:
                command = [sys.executable, str(ROOT / "scripts/bench_train_baseline.py"), "--model", model, "--seq", str(seq),
                           "--micro-batch", str(micro), "--dtype", dtype, "--steps", "6"]
                if peak:
                    command += ["--peak-flops", str(peak)]
                try:
                    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
                    report(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"trainer": f"pytorch {dtype}", "error": out.stderr[-600:]})
                except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as error:
                    report({"trainer": f"pytorch {dtype}", "model": model, "seq": seq, "error": str(error)})

    if len(fit) == 3:
        # memory = a + b·T + c·T², through the three measured points.
        (t1, m1), (t2, m2), (t3, m3) = fit
        c = ((m3 - m1) / (t3 - t1) - (m2 - m1) / (t2 - t1)) / (t3 - t2)
        b = (m2 - m1) / (t2 - t1) - c * (t1 + t2)
        a = m1 - b * t1 - c * t1**2
        longest = next((t for t in range(4096, 0, -8) if a + b * t + c * t * t <= 11), 0)
        report({"check": "gpt2-medium longest row in 11 GB (one row per pass, f32 weights and Adam state)", "card": card,
                "points_gib": fit, "fit": [a, b, c], "longest_tokens": longest})


if __name__ == "__main__":
    main()
