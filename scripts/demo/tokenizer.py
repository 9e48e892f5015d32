"""Writes data/demo/tokenizer.json: a byte-level BPE tokenizer in GPT-2's layout (same
pre-tokenizer, decoder and <|endoftext|> token), trained on the demo jokes only.

The demo trains its model from random weights on the CPU. With GPT-2's 50,257-token
vocabulary the LM head and its softmax are nearly all of each step; with a vocabulary of a
few hundred tokens learned from the demo jokes a step costs a small fraction of that, so the
demo can train a larger model for longer in less time. Being byte-level, it still encodes any
text.

    python3 scripts/demo/tokenizer.py          # needs `pip install -r scripts/requirements.txt`
"""
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = pathlib.Path(__file__).resolve().parents[2]
JOKES = ROOT / "data/demo/jokes.txt"
OUT = ROOT / "data/demo/tokenizer.json"
VOCAB_SIZE = 512
EOS = "<|endoftext|>"


def main() -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    jokes = [f"JOKE: {joke.strip()}" for joke in JOKES.read_text().split("\n\n") if joke.strip()]
    tokenizer.train_from_iterator(jokes, trainer)
    tokenizer.save(str(OUT))
    print(f"{OUT}: {tokenizer.get_vocab_size()} tokens, {EOS} = {tokenizer.token_to_id(EOS)}")


if __name__ == "__main__":
    main()
