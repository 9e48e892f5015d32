"""PyTorch's matrix products at GPT-2's training shapes, beside cubek's routines
(crates/cube-kernels/examples/product_routines.rs: the same products, operand layouts and
order): milliseconds and TFLOP/s of torch.matmul in f32 with TF32 (as CubeCL's tensor cores
take f32) and in bf16, each product timed over 10 launches after a warm-up.

    python3 scripts/bench/products_baseline.py [--width 768] [--vocab 50257] [--rows 4096]
"""

import argparse

import torch


def products(width: int, vocab: int, rows: int):
    """(name, m, n, k, lhs transposed, rhs transposed), as product_routines.rs lists them."""
    linears = [
        ("q/k/v", width, 3 * width, False),
        ("attention projection", width, width, False),
        ("MLP expansion", width, 4 * width, False),
        ("MLP projection", 4 * width, width, False),
        ("LM head", width, vocab, True),
    ]
    for name, d_in, d_out, weight_transposed in linears:
        yield f"{name} forward", rows, d_out, d_in, False, weight_transposed
        yield f"{name} input gradient", rows, d_in, d_out, False, not weight_transposed
        yield f"{name} weight gradient", d_in, d_out, rows, True, False


def operand(rows: int, columns: int, transposed: bool, dtype: torch.dtype) -> torch.Tensor:
    shape = (columns, rows) if transposed else (rows, columns)
    tensor = torch.empty(shape, device="cuda", dtype=dtype).uniform_(-1, 1)
    return tensor.t() if transposed else tensor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--rows", type=int, default=4096)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("| product | m × n × k | operands | ms | TFLOP/s |")
    print("|---|---|---|---:|---:|")
    for label, dtype in [("f32 (TF32)", torch.float32), ("bf16", torch.bfloat16)]:
        for name, m, n, k, lhs_t, rhs_t in products(args.width, args.vocab, args.rows):
            lhs, rhs = operand(m, k, lhs_t, dtype), operand(k, n, rhs_t, dtype)
            torch.matmul(lhs, rhs)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                torch.matmul(lhs, rhs)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end) / 10
            layouts = ("lhsᵀ" if lhs_t else "lhs") + (" rhsᵀ" if rhs_t else " rhs")
            print(f"| {name} | {m} × {n} × {k} | {label}, {layouts} | {ms:.3f} | {2 * m * n * k / ms / 1e9:.1f} |")


if __name__ == "__main__":
    main()
