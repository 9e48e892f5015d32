"""Writes data/demo/jokes.txt: a small corpus of jokes written for this project (no third-party
text) for the offline demo. Each joke comes from one of a few hand-written joke shapes filled
in from hand-written word lists, so a small model can learn the shapes in a few minutes.
Jokes are separated by blank lines (prepare's `text` format).

    python3 scripts/demo/jokes.py
"""
import itertools
import pathlib
import random

OUT = pathlib.Path(__file__).resolve().parents[2] / "data/demo/jokes.txt"

# (thing, what it says about itself, the pun)
OBJECTS = [
    ("calendar", "its days were numbered", "it had too many dates"),
    ("pencil", "it had no point", "it was a bit sharp with everyone"),
    ("ladder", "it kept stepping up", "it was always on the rise"),
    ("clock", "it was running late", "it needed some time off"),
    ("battery", "it felt drained", "it had no charge left"),
    ("umbrella", "it was under the weather", "it kept everyone covered"),
    ("broom", "it was swept off its feet", "it made a clean break"),
    ("candle", "it was burned out", "it had a short fuse"),
    ("map", "it lost its way", "it had too many folds"),
    ("sock", "it felt a bit off", "it lost its other half"),
    ("kettle", "it was all steamed up", "it had a lot on the boil"),
    ("piano", "it could not find the key", "it was out of tune"),
    ("bicycle", "it was two tired", "it could not stand on its own"),
    ("mirror", "it needed to reflect", "it saw right through itself"),
    ("spoon", "it was stirring up trouble", "it could not handle the soup"),
    ("lamp", "it was not very bright", "it had a light breakfast"),
]
ANIMALS = [
    ("cat", "purr-fect"), ("cow", "moo-ving"), ("owl", "a hoot"), ("bee", "buzzing"),
    ("fish", "off the hook"), ("sheep", "baa-d"), ("duck", "quackers"), ("frog", "hopping mad"),
    ("dog", "ruff"), ("horse", "a little hoarse"), ("snail", "sluggish"), ("crab", "shellfish"),
]
PLACES = ["the road", "the park", "the kitchen", "the library", "the beach", "the garden", "the bridge", "the market"]
JOBS = [
    ("baker", "kneaded the dough"), ("gardener", "was rooting for everyone"), ("tailor", "had a good fit"),
    ("painter", "drew a crowd"), ("plumber", "went with the flow"), ("teacher", "made the grade"),
    ("farmer", "was outstanding in the field"), ("chef", "had a recipe for success"), ("pilot", "was up in the clouds"),
]


def jokes() -> list[str]:
    out = []
    for (thing, feeling, pun) in OBJECTS:
        out.append(f"Why did the {thing} go to the doctor? Because {feeling}.")
        out.append(f"My {thing} told me {feeling}. I said that is why {pun}.")
        out.append(f"What do you call a sad {thing}? One that says {feeling}.")
    for (animal, word), place in itertools.product(ANIMALS, PLACES):
        out.append(f"Why did the {animal} cross {place}? To show everyone it was {word}.")
    for (animal, word) in ANIMALS:
        out.append(f"What did the {animal} say at the party? This is {word}!")
        out.append(f"Knock knock. Who is there? A {animal}. A {animal} who? A {animal} that is {word}.")
    for (job, pun), place in itertools.product(JOBS, PLACES[:4]):
        out.append(f"Why was the {job} famous at {place}? Because the {job} {pun}.")
    for (job, pun) in JOBS:
        out.append(f"I tried to be a {job} for a day. It did not work out, but at least I {pun}.")
    return out


def main() -> None:
    corpus = jokes()
    random.Random(0).shuffle(corpus)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n\n".join(corpus) + "\n")
    print(f"{len(corpus)} jokes -> {OUT}")


if __name__ == "__main__":
    main()
