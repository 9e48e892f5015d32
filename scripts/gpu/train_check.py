"""The train stage on a GPU, next to PyTorch on the same card (run by scripts/gpu/check.sh).

Checks, chosen with --checks (comma-separated, in order):
  agree          CUDA vs CPU: six identical training steps of the tiny fixture model on both
                 devices; per-step losses side by side (f32, and bf16 with --precisions).
  agree-padded   the same for a model whose rows CubeCL pads on CUDA (GPT-2's 50,257-token
                 vocabulary, 96 wide, 3 heads, 2 layers; random weights saved by
                 transformers) on the jokes at 256 tokens: the tiny fixture's 32 and 512
                 columns are never padded.
  MODEL:SEQ:MB[xACCUM][:PRECISION][:pools]
                 the train stage at a gpt2-family shape (random weights) on rows of SEQ tokens,
                 MB rows per forward pass, ACCUM passes per optimizer step (default 1;
                 gpt2-medium:550:1x16 is the original post's step): seconds to the first step (kernel compilation and
                 autotuning happen there), tokens/s (median over steps after the first two),
                 MFU, the process's peak GPU memory (nvidia-smi) and CubeCL's reserved bytes
                 (the stage's metrics: max_memory_reserved's counterpart); for shapes in --pytorch,
                 the same step in transformers + torch.optim.AdamW (bf16 autocast + SDPA, and
                 f32 with TF32 off). The train stage gives every buffer its own exact size; with
                 `pools`, it takes CubeCL's default pools instead (cubecl.toml `persistent_memory
                 = "disabled"`: pages of up to a quarter of the card on CUDA), to compare.
  profile:MODEL:SEQ:MB[xACCUM][:PRECISION]
                 where a step's time goes, kernel by kernel: runs of 1 and 11 steps with CubeCL's
                 profiling logger, their difference over 10 (scripts/lib/cubecl_profile.py).
                 Put it after a timed run at the same shape and precision, whose compiled
                 kernels both runs then find in the kernel cache.
  doc-mask       validation loss of gpt2 (random weights) trained 200 steps on the jokes at 256
                 tokens with and without --doc-mask, each evaluated with and without it.
  fit            the longest gpt2-medium row that fits in 11 GB, from a quadratic fit through
                 the peaks of gpt2-medium:256:1, :512:1 and :1024:1 (run those first; the
                 default checks measure gpt2-medium:1024:1 itself instead).

Each train-stage run has its own time limit and a cubecl.toml in its working directory that
logs kernel compilation and autotuning to cubecl.log there, to show where the first step goes,
and keeps compiled kernels in $OUT/kernel-cache: a shape named twice in --checks shows what a
second run with a warm kernel cache saves.
Results are printed as JSON lines and appended to $OUT/train.jsonl. scripts/gpu/check.sh train
runs it with the train binary it unpacks from target/gpu/train.xz:

    python3 scripts/gpu/train_check.py --bin "$bin/train" --data target/gpu/data --out "$OUT" \
        --checks agree,gpt2:1024:4,gpt2-medium:550:1x16 --pytorch gpt2:1024:4,gpt2-medium:550:1x16
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

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/lib"))
from cubecl_profile import kernel_times  # noqa: E402
TINY = ROOT / "crates/gpt2/tests/fixtures/tiny"
SIZES = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16)}
TRAIN_FLAGS: list[str] = []
CUBECL_TOML = """
[compilation]
cache = {{ file = "{cache}" }}
[compilation.logger]
level = "basic"
file = "cubecl.log"
[autotune.logger]
level = "minimal"
file = "cubecl.log"
"""
PROFILE_TOML = """
[profiling.logger]
level = "basic"
file = "profile.log"
"""
POOLS_TOML = """
[memory]
persistent_memory = "disabled"
"""


# A GPT-2 whose rows CubeCL pads on CUDA (96 f32s, 288, 50,257: not multiples of 512 bytes),
# random weights saved by transformers into the directory argv[1].
PADDED_MODEL = """
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)
GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_embd=96, n_head=3, n_layer=2, n_positions=256)).save_pretrained(sys.argv[1])
"""


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


def cubecl_lines(cwd: pathlib.Path) -> int:
    log = cwd / "cubecl.log"
    return sum(1 for _ in open(log, errors="replace")) if log.exists() else 0


def train(binary: str, args: list[str], run: pathlib.Path, steps: int, limit: float, env: dict, pools: bool = False, profile: bool = False) -> dict:
    """Run the train stage (with --train-flags) until `steps` steps are in metrics.jsonl (then stop it), the run
    ends, or `limit` seconds pass. Returns its step lines, peak memory and timings."""
    cwd = run.parent / f"{run.name}.cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    toml = CUBECL_TOML.format(cache=run.parent / "kernel-cache") + (POOLS_TOML if pools else "") + (PROFILE_TOML if profile else "")
    (cwd / "cubecl.toml").write_text(toml)
    log_path = run.parent / f"{run.name}.log"
    log = open(log_path, "w")
    process = subprocess.Popen([binary, *args, *TRAIN_FLAGS, "--out", str(run)], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                               env={**os.environ, **env})
    memory = PeakMemory(process.pid)
    if shutil.which("nvidia-smi"):
        memory.start()
    start, first_step, compiled_before_first = time.time(), None, None
    while process.poll() is None and len(metrics(run)) < steps and time.time() - start < limit:
        if first_step is None and metrics(run):
            first_step, compiled_before_first = round(time.time() - start, 1), cubecl_lines(cwd)
        time.sleep(0.2)
    stopped = process.poll() is None
    if stopped:
        process.kill()
    process.wait()
    memory.running = False
    log.close()
    lines = metrics(run)
    cubecl_tail = (cwd / "cubecl.log").read_text(errors="replace").splitlines()[-4:] if (cwd / "cubecl.log").exists() else []
    return {
        "lines": lines,
        "peak_mib": memory.peak_mib,
        # CubeCL's own count (the train stage's metrics), PyTorch's max_memory_reserved beside it.
        "allocator_reserved_gib": round(lines[-1]["device_reserved_mib"] / 1024, 2) if lines and lines[-1].get("device_reserved_mib") else None,
        "seconds_to_first_step": first_step,
        "step_seconds": [round(b["elapsed_s"] - a["elapsed_s"], 3) for a, b in zip(lines, lines[1:])][:8],
        "cubecl_log_lines": {"before_first_step": compiled_before_first, "in_all": cubecl_lines(cwd)},
        "cubecl_tail": [line[:160] for line in cubecl_tail[-2:]],
        "output_tail": None if lines and not stopped or len(lines) >= steps else log_path.read_text(errors="replace")[-800:],
    }


def shape(spec: str) -> tuple[str, int, int, int, list[str]]:
    """MODEL:SEQ:MB[xACCUM][:...] as (model, seq, micro-batch, accumulation, the rest)."""
    model, seq, passes, *rest = spec.split(":")
    micro, _, accum = passes.partition("x")
    return model, int(seq), int(micro), int(accum or 1), rest


def precision_flag(precision: str) -> list[str]:
    return [] if precision == "f32" else ["--precision", precision]


def flops_per_token(model: str, seq: int) -> float:
    n_embd, n_layer, _ = SIZES[model]
    vocab = 50257
    params = vocab * n_embd + n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
    return 6 * params + 12 * n_layer * seq * n_embd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--data", required=True, type=pathlib.Path, help="holds tiny/ and jokes-SEQ/ for each SEQ checked")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--device", default="cuda", help="cpu only to try this script without a GPU")
    # The goals: speed at gpt2 4 x 1024 (first, so that its first step finds an empty
    # kernel cache, as on a fresh machine) and the original's gpt2-medium 1 x 550 x 16,
    # gpt2-medium 1 x 1024 within 11 GB (CubeCL's reserved bytes, nvidia-smi's peak), the pools
    # beside the exact-size buffers, the first step again with a warm kernel cache, and where
    # gpt2's step goes, kernel by kernel, in f32 and bf16.
    parser.add_argument("--checks", default="gpt2:1024:4,agree,agree-padded,gpt2-medium:550:1x16,gpt2-medium:1024:1:f32,"
                        "gpt2-medium:1024:1:f32:pools,gpt2:1024:4:f32,profile:gpt2:1024:4:f32,profile:gpt2:1024:4:bf16")
    parser.add_argument("--precisions", default="f32", help="comma-separated train-stage --precision values to run")
    parser.add_argument("--pytorch", default="", help="MODEL:SEQ:MB shapes (comma-separated) to run the PyTorch baseline at, "
                        "each right after the train stage's first run at that shape")
    parser.add_argument("--limit", type=float, default=100, help="seconds each train-stage run may take")
    parser.add_argument("--train-flags", default="", help="more flags for every train-stage run, e.g. --train-flags=--doc-mask")
    parser.add_argument("--autotune", default="", help="CUBECL_AUTOTUNE_LEVEL for the train stage (minimal, balanced, ...)")
    parser.add_argument("--products", default="", help="GPT2_PRODUCTS for the train stage: the product routine every product of "
                        "the model takes (names: cube_kernels::product_routines; the survey `check.sh products` times each)")
    parser.add_argument("--attention", default="", help="GPT2_ATTENTION for the train stage: flash (the default), flash-tensor-cores "
                        "(the flash kernels' products on tensor cores) or products (burn's batched products on "
                        "tensor cores, the scores made in full)")
    args = parser.parse_args()
    # Each run works in its own directory (for its cubecl.toml): make every path absolute.
    args.bin, args.data, args.out = os.path.abspath(args.bin), args.data.resolve(), args.out.resolve()
    TRAIN_FLAGS.extend(args.train_flags.split())
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    gpu = args.device.startswith("cuda")
    card = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() if gpu else "cpu"
    env = {"CUBECL_AUTOTUNE_LEVEL": args.autotune} if args.autotune else {}
    # Runs under a product routine or attention route are named and recorded with them (the script
    # may run once a choice, same --out).
    if args.products:
        env["GPT2_PRODUCTS"] = args.products
    if args.attention:
        env["GPT2_ATTENTION"] = args.attention
    variant = (f"-{args.products}" if args.products else "") + (f"-attention-{args.attention}" if args.attention else "")
    products = args.products or "burn's"
    attention = args.attention or "flash"
    precisions = args.precisions.split(",")
    peak, fit = None, {}
    pytorch_shapes = {shape(spec)[:4] for spec in args.pytorch.split(",") if spec}

    for check in args.checks.split(","):
        if check in ("agree", "agree-padded"):
            data, init = args.data / "tiny", TINY
            if check == "agree-padded":
                data, init = args.data / "jokes-256", args.out / "padded-model"
                subprocess.run([sys.executable, "-c", PADDED_MODEL, str(init)], check=True)
            # Dropout on: its masks are Philox counters, word for word the same on CUDA and the CPU.
            same = ["--data", str(data), "--init", str(init), "--max-steps", "6", "--micro-batch", "2", "--grad-accum", "3",
                    "--lr", "1e-3", "--warmup-steps", "0", "--dropout", "0.1", "--no-shuffle", "--eval-every", "0"]
            cpu = train(args.bin, [*same, "--device", "cpu"], args.out / f"{check}-cpu{variant}", 6, args.limit, env)
            for precision in precisions:
                run = train(args.bin, [*same, "--device", args.device, *precision_flag(precision)], args.out / f"{check}-{precision}{variant}", 6, args.limit, env)
                record = {"check": "cuda_vs_cpu", "model": check, "card": card, "train_flags": TRAIN_FLAGS, "products": products, "attention": attention, "precision": precision, "cpu_losses": [l["loss"] for l in cpu["lines"]],
                          "cuda_losses": [l["loss"] for l in run["lines"]], **{k: v for k, v in run.items() if k != "lines"}}
                if len(cpu["lines"]) == len(run["lines"]) == 6:
                    record["max_relative_difference"] = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(cpu["lines"], run["lines"]))
                report(record)
        elif check == "doc-mask":
            # What --doc-mask does to validation loss: gpt2 from random weights on the jokes,
            # trained with and without it, each final model evaluated both ways.
            steps = 200 if gpu else 4
            losses = {}
            for flags in [[], ["--doc-mask"]]:
                name = "doc-mask-" + ("on" if flags else "off")
                run = args.out / name
                train(args.bin, ["--data", str(args.data / "jokes-256"), "--init", "random:gpt2", "--micro-batch", "8", "--grad-accum", "1",
                                 "--max-steps", str(steps), "--lr", "6e-4", "--warmup-steps", str(steps // 10), "--schedule", "cosine",
                                 "--eval-every", "0", "--save-every", "0", "--device", args.device, *flags], run, steps + 1, 4 * args.limit, env)
                for evaluation in [[], ["--doc-mask"]]:
                    out = subprocess.run([args.bin, "eval", "--model", str(run / "final"), "--data", str(args.data / "jokes-256"),
                                          "--micro-batch", "8", "--device", args.device, *evaluation], capture_output=True, text=True)
                    key = f"trained {'with' if flags else 'without'}, evaluated {'with' if evaluation else 'without'}"
                    losses[key] = out.stdout.strip().rsplit("loss ", 1)[-1] if out.returncode == 0 else out.stderr[-300:]
            report({"check": "doc-mask validation loss", "card": card, "model": "gpt2 from random weights", "steps": steps,
                    "rows": "8 × 256 per step", "losses": losses})
        elif check == "fit":
            points = sorted(fit.items())
            if len(points) != 3:
                report({"check": "fit", "error": f"needs gpt2-medium at three row lengths, one row per pass; have {points}"})
                continue
            # memory = a + b·T + c·T², through the three measured points.
            (t1, m1), (t2, m2), (t3, m3) = points
            c = ((m3 - m1) / (t3 - t1) - (m2 - m1) / (t2 - t1)) / (t3 - t2)
            b = (m2 - m1) / (t2 - t1) - c * (t1 + t2)
            a = m1 - b * t1 - c * t1**2
            longest = next((t for t in range(4096, 0, -8) if a + b * t + c * t * t <= 11), 0)
            report({"check": "gpt2-medium longest row in 11 GB (one row per pass, f32 weights and Adam state)", "card": card,
                    "points_gib": points, "fit": [a, b, c], "longest_tokens": longest})
        elif check.startswith("profile:"):
            model, seq, micro, accum, rest = shape(check.removeprefix("profile:"))
            precision = rest[0] if rest else "f32"
            name = f"profile-{pathlib.Path(model).stem}-seq{seq}-mb{micro}x{accum}-{precision}{variant}"
            runs = {}
            # A first run fills the kernel cache with what the profiled runs launch that the timed
            # run did not (the final validation's kernels), whose compilation would otherwise
            # count in the shorter profiled run alone.
            for steps, profile in [(1, False), (1, True), (11, True)]:
                # Each run to its end (the steps asked for are more than it makes), so the log is whole.
                run = train(args.bin, ["--data", str(args.data / f"jokes-{seq}"), "--init", f"random:{model}", "--micro-batch", str(micro),
                                     "--grad-accum", str(accum), "--max-steps", str(steps), "--eval-every", "0", "--save-every", "0",
                                     "--device", args.device, *precision_flag(precision)],
                            args.out / f"{name}-{steps}{'' if profile else '-warm-up'}", steps + 1, 2 * args.limit, env, profile=profile)
                if profile:
                    runs[steps] = run
            report({"check": "profile", "run": name, "products": products, "attention": attention, "card": card, "model": model, "seq": seq, "micro_batch": micro, "grad_accum": accum, "precision": precision,
                    "steps": [len(run["lines"]) for run in runs.values()], "output_tail": runs[11]["output_tail"],
                    "seconds_to_first_step": [run["seconds_to_first_step"] for run in runs.values()],
                    **kernel_times(args.out / f"{name}-1.cwd" / "profile.log", args.out / f"{name}-11.cwd" / "profile.log", 10)})
        else:
            model, seq, micro, accum, rest = shape(check)
            pools = "pools" in rest
            only = [field for field in rest if field != "pools"]
            if gpu and peak is None:
                out = subprocess.run([sys.executable, str(ROOT / "scripts/bench/train_baseline.py"), "--matmul-peak"], capture_output=True, text=True)
                peak = json.loads(out.stdout)["bf16_matmul_tflops"] * 1e12 if out.returncode == 0 else None
                report({"check": "card", "card": card, "bf16_matmul_tflops": peak and round(peak / 1e12, 1)})
            for precision in only or precisions:
                common = ["--data", str(args.data / f"jokes-{seq}"), "--init", f"random:{model}", "--micro-batch", str(micro), "--grad-accum", str(accum),
                          "--max-steps", "1000", "--eval-every", "0", "--save-every", "0", "--device", args.device, *precision_flag(precision)]
                name = f"{pathlib.Path(model).stem}-seq{seq}-mb{micro}x{accum}-{precision}{variant}" + ("-pools" if pools else "")
                name += f"-{len(list(args.out.glob(name + '*.log'))) + 1}"
                run = train(args.bin, common, args.out / name, 7, args.limit, env, pools)
                record = {"trainer": f"train stage {precision}", "train_flags": TRAIN_FLAGS, "products": products, "attention": attention, "run": name, "model": model, "seq": seq, "micro_batch": micro, "grad_accum": accum, "card": card,
                          "memory": "CubeCL's pools" if pools else "exact-size buffers",
                          "steps": len(run["lines"]), "peak_gpu_gib": round(run["peak_mib"] / 1024, 2), **{k: v for k, v in run.items() if k not in ("lines", "peak_mib")}}
                timed = [line["tokens_per_s"] for line in run["lines"][2:]]
                if timed:
                    record["tokens_per_s"] = round(statistics.median(timed), 1)
                    if peak:
                        record["mfu"] = round(record["tokens_per_s"] * flops_per_token(model, seq) / peak, 4)
                report(record)
                if (micro, accum, model, precision) == (1, 1, "gpt2-medium", "f32") and not pools and run["peak_mib"]:
                    fit[seq] = run["peak_mib"] / 1024
            if gpu and (model, seq, micro, accum) in pytorch_shapes and not pools:
                pytorch_shapes.remove((model, seq, micro, accum))  # once per shape
                for dtype in ["bf16", "f32"]:
                    command = [sys.executable, str(ROOT / "scripts/bench/train_baseline.py"), "--model", model, "--seq", str(seq),
                               "--micro-batch", str(micro), "--grad-accum", str(accum), "--dtype", dtype, "--steps", "6"]
                    if peak:
                        command += ["--peak-flops", str(peak)]
                    try:
                        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
                        report(json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"trainer": f"pytorch {dtype}", "error": out.stderr[-600:]})
                    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as error:
                        report({"trainer": f"pytorch {dtype}", "model": model, "seq": seq, "error": str(error)})


if __name__ == "__main__":
    main()
