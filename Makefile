# Stages are run on every call; each one compares its inputs (flags, and the hashes of the
# artifacts it reads) with those recorded in its output and does nothing when they match. So
# `make pipeline` after changing only [sample] reruns only sampling; changing the dataset
# reruns everything.
PIPELINE ?= pipelines/reddit-jokes.toml
# train and sample are built with CUDA when this machine has an NVIDIA GPU (nvidia-smi names
# one) and CUDA's toolkit, whose NVRTC and headers the stages compile their kernels with at run
# time (CUDA_PATH, /usr/local/cuda or /opt/cuda). FEATURES on the command line decides instead:
# `FEATURES=` builds for the CPU, `FEATURES=cuda` for CUDA (`cuda autotune` adds CubeCL's kernel
# autotuning).
ifeq ($(origin FEATURES),undefined)
  gpu := $(shell nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  cuda_toolkit := $(firstword $(wildcard $(CUDA_PATH) /usr/local/cuda /opt/cuda))
  ifneq ($(and $(gpu),$(cuda_toolkit)),)
    FEATURES := cuda
    build_choice := CUDA build: found $(gpu) (nvidia-smi) and CUDA in $(cuda_toolkit); FEATURES= builds for the CPU
  else ifneq ($(gpu),)
    FEATURES :=
    build_choice := CPU build: found $(gpu) but not CUDA's toolkit (set CUDA_PATH, or install it in /usr/local/cuda), so the GPU stays unused
  else
    FEATURES :=
    build_choice := CPU build: no NVIDIA GPU found (nvidia-smi); FEATURES=cuda builds for CUDA anyway
  endif
else
  build_choice := $(if $(strip $(FEATURES)),build with FEATURES=$(FEATURES) as given,CPU build: FEATURES= as given)
endif
CARGO ?= cargo
features = $(foreach feature,$(FEATURES),$(foreach stage,$(1),--features $(stage)/$(feature)))
# The stages run from the binaries `stages` builds: `cargo run -p NAME` would rebuild each one
# with only its own features.
BIN = $(or $(CARGO_TARGET_DIR),target)/release

.PHONY: pipeline stages prepare train sample demo test bench bench-prepare bench-generate clean help
# Stages run one after another, in the order given.
.NOTPARALLEL:

help:
	@echo "make pipeline [PIPELINE=pipelines/NAME.toml] [FEATURES=cuda|]  prepare -> train -> sample"
	@echo "                   (CUDA when nvidia-smi finds a GPU and CUDA is installed; FEATURES decides instead)"
	@echo "make prepare | train | sample [PIPELINE=...]                   one stage"
	@echo "make demo          offline, CPU only: the bundled demo jokes through all three stages"
	@echo "make test          the test suite (no GPU needed)"
	@echo "make bench         benchmarks against Python baselines"
	@echo "make clean         remove prepared data, runs, samples and benchmark files"

pipeline: prepare train sample

# One build of all three stages: cargo compiles them side by side, where building each as it
# runs would leave cores idle.
stages:
	@echo "make: $(build_choice)"
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
