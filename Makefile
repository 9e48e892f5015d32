# Stages are run on every call; each one compares its inputs (flags, and the hashes of the
# artifacts it reads) with those recorded in its output and does nothing when they match. So
# `make pipeline` after changing only [sample] reruns only sampling; changing the dataset
# reruns everything.
PIPELINE ?= pipelines/reddit-jokes.toml
# `make pipeline FEATURES=cuda` builds train and sample with CUDA support (`cuda autotune`
# adds CubeCL's kernel autotuning).
FEATURES ?=
CARGO ?= cargo
features = $(foreach feature,$(FEATURES),$(foreach stage,$(1),--features $(stage)/$(feature)))
# The stages run from the binaries `stages` builds: `cargo run -p NAME` would rebuild each one
# with only its own features.
BIN = $(or $(CARGO_TARGET_DIR),target)/release

.PHONY: pipeline stages prepare train sample demo test bench bench-prepare bench-generate clean help
# Stages run one after another, in the order given.
.NOTPARALLEL:

help:
	@echo "make pipeline [PIPELINE=pipelines/NAME.toml] [FEATURES=cuda]   prepare -> train -> sample"
	@echo "make prepare | train | sample [PIPELINE=...]                   one stage"
	@echo "make demo          offline, CPU only: the bundled demo jokes through all three stages"
	@echo "make test          the test suite (no GPU needed)"
	@echo "make bench         benchmarks against Python baselines"
	@echo "make clean         remove prepared data, runs, samples and benchmark files"

pipeline: prepare train sample

# One build of all three stages: cargo compiles them side by side, where building each as it
# runs would leave cores idle.
stages:
	$(CARGO) build --release --quiet $(call features,train sample) -p prepare -p train -p sample

prepare: stages
	$(BIN)/prepare --pipeline $(PIPELINE)

train: stages
	$(BIN)/train --pipeline $(PIPELINE)

sample: stages
	$(BIN)/sample --pipeline $(PIPELINE)

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
	bash scripts/bench/prepare.sh

# Generation tokens/s on the CPU, gpt2 (124M) shapes, next to transformers' generate.
bench-generate:
	$(CARGO) bench -p sample --bench generate -- --no-cache
	python3 scripts/bench/generate_baseline.py --device cpu --no-cache

clean:
	rm -rf data/prepared data/runs data/samples data/bench
