"""Python baseline for the prepare benchmark: the same work done the usual way.

Reads a reddit_jokes.json-shaped file, joins title and body, applies the template, encodes with
Hugging Face `tokenizers` (encode_batch: Rust, all cores), and packs whole jokes into rows of
--seq-len tokens (next-fit) as numpy arrays. Prints one JSON line of figures.
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import tokenizers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--seq-len", type=int, default=1024)
    args = parser.parse_args()
    start = time.perf_counter()
    with open(args.source, encoding="utf-8") as f:
        records = json.load(f)
    texts = []
    for r in records:
        title, body = (r.get("title") or "").strip(), (r.get("body") or "").strip()
        joke = body if not title or body.startswith(title) else (title if not body else f"{title}\n{body}")
        texts.append(f"JOKE: {joke}")
    del records
    tokenizer = tokenizers.Tokenizer.from_file(args.tokenizer)
    tokenizer.encode_special_tokens = True
    eos = tokenizer.token_to_id("<|endoftext|>")
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    documents = [e.ids + [eos] for e in encodings]
    del encodings
    rows, row = [], []
    for doc in documents:
        while doc:
            if len(row) + min(len(doc), args.seq_len) > args.seq_len:
                rows.append(row)
                row = []
            take = doc[: args.seq_len - len(row)]
            row += take
            doc = doc[len(take):]
    if row:
        rows.append(row)
    packed = np.full((len(rows), args.seq_len), eos, dtype=np.uint16)
    for i, r in enumerate(rows):
        packed[i, : len(r)] = r
    elapsed = time.perf_counter() - start
    text_bytes = sum(len(t.encode()) for t in texts)
    print(json.dumps({
        "seconds": elapsed,
        "jokes": len(texts),
        "text_mb": text_bytes / 1e6,
        "rows": len(rows),
        "tokens": int(sum(len(d) for d in documents)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
