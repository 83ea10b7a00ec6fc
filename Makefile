# Build, test and lint entry points; `make help` lists them. Every target works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The venv and cargo's target dir live outside the checkout, so fresh clones (and CI) reuse them.
CACHE ?= $(HOME)/.cache/jacobian
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
# torch-sys asks `python` on PATH (when VIRTUAL_ENV is set) which torch to build against.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export CARGO_TARGET_DIR ?= $(CACHE)/target
export LIBTORCH_USE_PYTORCH := 1

.PHONY: help
help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: venv
venv:  ## Create the venv with the pinned torch and tools (skipped when already up to date)
	@cmp -s requirements-dev.txt $(VENV)/requirements-dev.txt || { \
		python3 -m venv $(VENV) && \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt && \
		cp requirements-dev.txt $(VENV)/requirements-dev.txt; }

.PHONY: wheel
wheel: venv  ## Build the release wheel into dist/
	rm -f dist/jacobian_reg-*.whl
	maturin build --release --out dist

.PHONY: install
install: wheel  ## Install the wheel into the venv (what the tests and examples use)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall dist/jacobian_reg-*.whl

.PHONY: test
test: install  ## Run the whole test suite against the installed wheel
	$(PY) -m pytest

.PHONY: example
example: install  ## Train the MNIST example's MLP on the bundled handwritten digits
	$(PY) examples/mnist.py

.PHONY: bench
bench: install  ## Time training steps: ours against the pure-PyTorch reference (not part of test)
	$(PY) -m benchmarks

.PHONY: variance
variance: install  ## Measure the variance of the sphere and orthogonal estimators (figure)
	$(PY) -m benchmarks.variance

.PHONY: robustness
robustness: install  ## Reproduce the paper's robustness claims on the digits: table, JSON, figures
	$(PY) examples/robustness.py --out docs/figures

.PHONY: lint
lint: venv  ## Check formatting (rustfmt, ruff format), clippy -D warnings and ruff
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	ruff check python tests examples benchmarks
	ruff format --check python tests examples benchmarks

.PHONY: stubtest
stubtest: install  ## Check the hand-written .pyi against the installed native module
	$(PY) -m mypy.stubtest jacobian._native

.PHONY: format
format: venv  ## Format Rust and Python sources in place
	cargo fmt
	ruff format python tests examples benchmarks
	ruff check --fix python tests examples benchmarks

.PHONY: clean
clean:  ## Remove build outputs of this checkout (the shared cache stays)
	rm -rf dist
