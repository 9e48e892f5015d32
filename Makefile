# Stages are rerun on every call; each one compares its inputs' hashes with the lineage recorded
# in its output and does nothing when they match.
PIPELINE ?= pipelines/reddit-jokes.toml
CARGO ?= cargo
STAGE = $(CARGO) run --release --quiet -p

.PHONY: pipeline prepare test bench bench-prepare bench-generate clean help

help:
	@echo "make pipeline [PIPELINE=pipelines/NAME.toml]   run every stage of a pipeline file"
	@echo "make prepare  [PIPELINE=...]                   corpus -> packed token shards"
	@echo "make test                                      the test suite (no GPU needed)"
	@echo "make bench                                     benchmarks against Python baselines"
	@echo "make clean                                     remove prepared data and benchmark files"

pipeline: prepare

prepare:
	$(STAGE) prepare -- --pipeline $(PIPELINE)

test:
	$(CARGO) test --workspace

bench: bench-prepare bench-generate

bench-prepare:
	bash scripts/bench-prepare.sh

# Generation tokens/s on the CPU, gpt2 (124M) shapes, next to transformers' generate.
bench-generate:
	$(CARGO) bench -p sample --bench generate
	python3 scripts/bench_generate_baseline.py --device cpu --no-cache

clean:
	rm -rf data/prepared data/bench
