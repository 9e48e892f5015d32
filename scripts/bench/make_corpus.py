"""Write a reddit_jokes.json-shaped corpus of at least --mb megabytes of joke text for benchmarks.

Jokes come from ../shared/datasets (real joke text); each copy is numbered so that none is an
exact duplicate and cleaning keeps them all.

    python3 scripts/bench/make_corpus.py --mb 50 --out data/bench/reddit_jokes.json
"""
import argparse
import csv
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"


def source_jokes():
    jokes = [r["body"] for r in json.loads((DATASETS / "stupidstuff.json").read_text()) if r.get("body", "").strip()]
    for name in ("reddit-cleanjokes.csv", "onelinefun.csv"):
        with open(DATASETS / name, newline="", encoding="utf-8-sig") as f:
            jokes += [row["Joke"] for row in csv.DictReader(f) if row["Joke"].strip()]
    return jokes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    jokes, records, size, i = source_jokes(), [], 0, 0
    while size < args.mb * 1e6:
        joke = jokes[i % len(jokes)]
        title, _, body = joke.partition(" ")
        record = {"title": f"#{i} {title}", "body": body, "id": str(i), "score": i % 100}
        records.append(record)
        size += len(record["title"].encode()) + len(body.encode())
        i += 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records))
    print(f"{args.out}: {len(records)} jokes, {size / 1e6:.1f} MB of joke text")


if __name__ == "__main__":
    main()
