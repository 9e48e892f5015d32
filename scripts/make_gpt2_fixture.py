"""Reference fixtures for the gpt2 crate, made with Hugging Face `transformers` (the oracle).

Writes crates/gpt2/tests/fixtures/:
- tiny/           a random-weight GPT-2 (2 layers, 4 heads, 32 wide, vocab 512) saved by
                  save_pretrained: config.json + model.safetensors, the real layout and naming
- tiny-f16/, tiny-bf16/   the same weights saved in half precision
- tiny-sharded/   the same weights in several shards with model.safetensors.index.json
- tiny-legacy/    the same weights in the older naming: no `transformer.` prefix, with the
                  `attn.bias` / `attn.masked_bias` buffers and an explicit `lm_head.weight`
- expected.safetensors + expected.json: inputs, logits, masked loss, greedy continuations

    pip install torch transformers safetensors
    python3 scripts/make_gpt2_fixture.py
"""
import copy
import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/gpt2/tests/fixtures"
VOCAB, EOS = 512, 511


def main() -> None:
    torch.manual_seed(1234)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=EOS, eos_token_id=EOS, initializer_range=0.4, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # spread LayerNorm and bias values so that a swapped tensor shows
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    model.save_pretrained(OUT / "tiny")
    copy.deepcopy(model).half().save_pretrained(OUT / "tiny-f16")
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(OUT / "tiny-bf16")
    model.save_pretrained(OUT / "tiny-sharded", max_shard_size="40KB")
    legacy = OUT / "tiny-legacy"
    legacy.mkdir()
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()}
    state["lm_head.weight"] = model.lm_head.weight.detach().clone()
    n = config.n_positions
    for layer in range(config.n_layer):
        state[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, legacy / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(OUT / "tiny/config.json", legacy / "config.json")

    generator = torch.Generator().manual_seed(99)
    input_ids = torch.randint(0, VOCAB - 1, (2, 16), generator=generator)
    labels = input_ids.clone()
    labels[1, 10:] = -100  # row 1 is "padding" after 10 tokens: ignored by the loss
    with torch.no_grad():
        out = model(input_ids, labels=labels)
    prompts = [[5, 17, 300, 42], [7]]
    greedy = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        generated = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=20,
                                   pad_token_id=EOS, eos_token_id=EOS)
        greedy.append(generated[0, len(prompt):].tolist())
    save_file({"input_ids": input_ids.to(torch.int64).contiguous(), "logits": out.logits.float().contiguous()},
              OUT / "expected.safetensors")
    (OUT / "expected.json").write_text(json.dumps({
        "loss": out.loss.item(),
        "loss_mask_row1_from": 10,
        "prompts": prompts,
        "greedy": greedy,
        "torch": torch.__version__,
    }, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
