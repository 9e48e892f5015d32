"""Reference token ids from Hugging Face `tokenizers` (Python) for the prepare stage's parity test.

Each case is a joke rendered through the default template `JOKE: {text}<|endoftext|>`: the text
part is encoded with special-token matching off (a joke's own "<|endoftext|>" characters stay
text), then the real end-of-text token id is appended, exactly as `prepare` does.

    pip install tokenizers
    python3 scripts/make_tokenizer_fixture.py > crates/prepare/tests/fixtures/tokenizer_parity.json
"""
import json
import pathlib
import sys

import tokenizers

ROOT = pathlib.Path(__file__).resolve().parent.parent
JOKES = [
    "Why did the chicken cross the road?\nTo get to the other side.",
    "I'm reading a book on anti-gravity. It's impossible to put down!",
    "Naïve café owners' résumés: ¿qué pasa? — «bien» 🤖🎉 ok",
    "   leading spaces,\ttabs\tand    runs of     spaces   ",
    "Line one\n\nLine three\n\n\n\nafter four newlines",
    "A joke that says <|endoftext|> in the middle <|endoftext|>",
    "Numbers 1234567 and 3.14159, contractions: don't, won't, y'all'd've",
    "日本語のジョーク: なぜ猫はコンピュータが好き? マウスがあるから。",
    "Emoji sequence 👨‍👩‍👧‍👦 and flags 🇬🇧🇫🇷, zero-width\u200bjoiner",
    "CAPS LOCK IS CRUISE CONTROL FOR COOL",
    "x",
    "Ends with newline\n",
    "Mixed\r\nline endings are normalised before tokenizing, so this one keeps \\r? no: raw here",
    "Kurze Witze über Programmierer: Warum verwechseln sie Halloween und Weihnachten? Weil OCT 31 == DEC 25.",
    "' leading apostrophe and trailing '",
]
TEMPLATE_PREFIX, EOS = "JOKE: ", "<|endoftext|>"


def main() -> None:
    tokenizer = tokenizers.Tokenizer.from_file(str(ROOT / "data/tokenizers/gpt2/tokenizer.json"))
    tokenizer.encode_special_tokens = True
    eos_id = tokenizer.token_to_id(EOS)
    cases = []
    for joke in JOKES:
        ids = tokenizer.encode(TEMPLATE_PREFIX + joke, add_special_tokens=False).ids + [eos_id]
        cases.append({"joke": joke, "ids": ids})
    header = {"tokenizers_version": tokenizers.__version__, "template": TEMPLATE_PREFIX + "{text}" + EOS}
    lines = [json.dumps(case, ensure_ascii=False) for case in cases]
    sys.stdout.write(json.dumps(header)[:-1] + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n")


if __name__ == "__main__":
    main()
