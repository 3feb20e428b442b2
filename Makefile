# Set-up and everyday commands. `make serve` and `make test` are the two the README promises.
SHELL := /bin/bash
.DEFAULT_GOAL := serve

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
MODEL ?= support-intents
SERVE_ARGS ?=

# torch first: the CUDA build only where a GPU is visible, otherwise the CPU build, so that
# no machine without a GPU ever downloads the CUDA libraries.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"; \
	else \
	  $(BIN)/pip install --quiet "torch==$(TORCH_VERSION)+cpu"; \
	fi
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install serve test test-fast lint protos bench
install: $(VENV)/.installed

serve: install
	$(BIN)/loopserve init $(MODEL) --if-missing
	exec $(BIN)/loopserve serve --model $(MODEL) $(SERVE_ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

protos: install
	$(BIN)/python -m service.api.codegen

bench: install
	$(BIN)/python bench/serving.py
