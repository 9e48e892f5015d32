"""Reference training run for the train stage, made with `transformers` + `torch.optim.AdamW`.

Fine-tunes the gpt2 crate's tiny fixture model (crates/gpt2/tests/fixtures/tiny) on packed rows
of random documents, the way the train stage does: rows in file order, micro-batch 2 x
accumulation 3, the step's loss the token mean over all of the step's rows, AdamW with decay on
matrices only (not biases, LayerNorms or the position embedding), global-norm clipping, linear
warmup then linear decay (transformers' get_linear_schedule_with_warmup), dropout 0.

Writes crates/train/tests/fixtures/parity/:
- tokenizer.json  a word-level tokenizer over the tiny model's 512 ids (`t0`..`t510`, and
                  `<|endoftext|>` = 511), so that the rows form a real prepared dataset
- expected.json   the rows (as documents, packed per row), the hyper-parameters, per-step
                  loss / lr / grad_norm, and the validation loss of the final weights
- final/          the final weights, saved by save_pretrained

    pip install torch transformers tokenizers
    python3 scripts/make_train_fixture.py
"""
import json
import pathlib
import random
import shutil

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2LMHeadModel, get_linear_schedule_with_warmup

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "crates/gpt2/tests/fixtures/tiny"
OUT = ROOT / "crates/train/tests/fixtures/parity"
VOCAB, EOS, SEQ_LEN = 512, 511, 48
HYPER = {
    "micro_batch": 2,
    "grad_accum": 3,
    "epochs": 4,
    "lr": 1e-3,
    "warmup_steps": 4,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "eps": 1e-8,
    "max_grad_norm": 1.0,
}


def packed_rows(rng: random.Random, count: int) -> list[list[list[int]]]:
    """`count` rows, each a list of documents (ending in EOS) that fit in SEQ_LEN together."""
    rows = []
    for _ in range(count):
        target, row = rng.randint(12, SEQ_LEN), []
        while True:
            doc = [rng.randrange(EOS) for _ in range(rng.randint(2, 14))] + [EOS]
            if sum(map(len, row)) + len(doc) > target:
                break
            row.append(doc)
        rows.append(row or [[rng.randrange(EOS) for _ in range(target - 1)] + [EOS]])
    return rows


def batch(rows: list[list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids padded with EOS to the longest row, and labels with -100 on padding."""
    flat = [sum(row, []) for row in rows]
    width = max(map(len, flat))
    ids = torch.tensor([r + [EOS] * (width - len(r)) for r in flat])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in flat])
    return ids, labels


def token_nll_sum(model, ids, labels) -> tuple[torch.Tensor, int]:
    logits = model(ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return nll, int((targets != -100).sum())


def main() -> None:
    rng = random.Random(7)
    train_rows, val_rows = packed_rows(rng, 30), packed_rows(rng, 8)
    model = GPT2LMHeadModel.from_pretrained(MODEL, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    model.train()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "wpe" not in name else no_decay).append(p)
    h = HYPER
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": h["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    rows_per_step = h["micro_batch"] * h["grad_accum"]
    steps_per_epoch = -(-len(train_rows) // rows_per_step)
    total_steps = steps_per_epoch * h["epochs"]
    scheduler = get_linear_schedule_with_warmup(optimizer, h["warmup_steps"], total_steps)

    steps = []
    for step in range(total_steps):
        first = (step % steps_per_epoch) * rows_per_step
        step_rows = train_rows[first:first + rows_per_step]
        micro = [batch(step_rows[i:i + h["micro_batch"]]) for i in range(0, len(step_rows), h["micro_batch"])]
        step_tokens = sum(int((labels[:, 1:] != -100).sum()) for _, labels in micro)
        loss = 0.0
        for ids, labels in micro:
            nll, _ = token_nll_sum(model, ids, labels)
            (nll / step_tokens).backward()
            loss += nll.item() / step_tokens
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), h["max_grad_norm"]).item()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        steps.append({"step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm})

    model.eval()
    with torch.no_grad():
        nll, count = 0.0, 0
        for i in range(0, len(val_rows), h["micro_batch"]):
            s, c = token_nll_sum(model, *batch(val_rows[i:i + h["micro_batch"]]))
            nll, count = nll + s.item(), count + c

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    vocab = {f"t{i}": i for i in range(EOS)} | {"<|endoftext|>": EOS}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    tokenizer.save(str(OUT / "tokenizer.json"))
    model.save_pretrained(OUT / "final")
    expected = {"seq_len": SEQ_LEN, "eos": EOS, "hyper": HYPER, "train_rows": train_rows, "val_rows": val_rows,
                "steps": steps, "val_loss": nll / count}
    (OUT / "expected.json").write_text(json.dumps(expected) + "\n")
    print(f"{total_steps} steps: loss {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}, "
          f"grad norms {min(s['grad_norm'] for s in steps):.2f}..{max(s['grad_norm'] for s in steps):.2f}, val {nll / count:.4f}")


if __name__ == "__main__":
    main()
