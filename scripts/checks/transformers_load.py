"""A model directory saved by the gpt2 crate must load in `transformers` unchanged: no missing
or unexpected weights, and the fixture's logits (computed by transformers on the original
weights) within 1e-5.

    cargo run --release -p gpt2 --example save_fixture -- /tmp/saved
    python3 scripts/checks/transformers_load.py /tmp/saved
"""
import pathlib
import sys

import torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "crates/gpt2/tests/fixtures"


def main() -> None:
    model, info = GPT2LMHeadModel.from_pretrained(sys.argv[1], output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if problems:
        sys.exit(f"transformers reported {problems}")
    expected = load_file(FIXTURES / "expected.safetensors")
    with torch.no_grad():
        logits = model.eval()(expected["input_ids"]).logits
    difference = (logits - expected["logits"]).abs().max().item()
    print(f"transformers loaded {sys.argv[1]}: no missing/unexpected weights, max |logit difference| {difference:.2e}")
    if difference > 1e-5:
        sys.exit("logits differ")


if __name__ == "__main__":
    main()
