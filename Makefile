# Stages are run on every call; each one compares its inputs (flags, and the hashes of the
# artifacts it reads) with those recorded in its output and does nothing when they match. So
# `make pipeline` after changing only [sample] reruns only sampling; changing the dataset
# reruns everything.
PIPELINE ?= pipelines/reddit-jokes.toml
# `make pipeline FEATURES=cuda` builds the stages with CUDA support.
FEATURES ?=
CARGO ?= cargo
STAGE = $(CARGO) run --release --quiet $(if $(FEATURES),--features $(FEATURES)) -p

.PHONY: pipeline prepare train sample demo test bench bench-prepare bench-generate clean help

help:
	@echo "make pipeline [PIPELINE=pipelines/NAME.toml] [FEATURES=cuda]   prepare -> train -> sample"
	@echo "make prepare | train | sample [PIPELINE=...]                   one stage"
	@echo "make demo          offline, CPU only: the bundled demo jokes through all three stages"
	@echo "make test          the test suite (no GPU needed)"
	@echo "make bench         benchmarks against Python baselines"
	@echo "make clean         remove prepared data, runs, samples and benchmark files"

pipeline: prepare train sample

prepare:
	$(STAGE) prepare -- --pipeline $(PIPELINE)

train:
	$(STAGE) train -- --pipeline $(PIPELINE)

sample:
	$(STAGE) sample -- --pipeline $(PIPELINE)

demo:
	$(MAKE) --no-print-directory pipeline PIPELINE=pipelines/demo.toml FEATURES=
	@echo
	@echo "demo artifacts:"
	@echo "  data/prepared/demo/     packed token shards, manifest.json, tokenizer.json"
	@echo "  data/runs/demo/final/   the trained model (Hugging Face layout)"
	@echo "  data/runs/demo/         metrics.jsonl, loss.png, run.json, checkpoints/"
	@echo "  data/samples/demo.jsonl and demo.txt   the generated jokes"

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
	rm -rf data/prepared data/runs data/samples data/bench
