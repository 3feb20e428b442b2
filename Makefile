# Set-up and everyday commands. `make serve` and `make test` are the two the README promises.
SHELL := /bin/bash
.DEFAULT_GOAL := serve

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
MODEL ?= support-intents
SERVE_ARGS ?=
PROMTOOL ?=
RULES_DIR := deploy/prometheus

# torch first (scripts/install-torch.sh): the CUDA build only where a GPU is visible, otherwise
# the CPU build, so that no machine without a GPU downloads the CUDA libraries. alibi-detect
# without its declared dependencies (see scripts/requirements-no-deps.txt), then the project;
# --no-warn-conflicts: pip would otherwise list the alibi-detect dependencies left out on purpose.
$(VENV)/.installed: pyproject.toml scripts/install-torch.sh scripts/requirements-no-deps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	TORCH_VERSION=$(TORCH_VERSION) scripts/install-torch.sh $(BIN)/pip
	$(BIN)/pip install --quiet --no-deps -r scripts/requirements-no-deps.txt
	$(BIN)/pip install --quiet --no-warn-conflicts -e '.[dev]'
	touch $@

.PHONY: install serve test test-fast test-rules lint protos bench
install: $(VENV)/.installed

serve: install
	$(BIN)/loopserve init $(MODEL) --if-missing
	exec $(BIN)/loopserve serve --model $(MODEL) $(SERVE_ARGS)

# PostgreSQL, and chromium for the console's browser tests: installed from Debian's packages
# where we may (root, or sudo for chromium); elsewhere their tests are skipped with the reason,
# except under CI=true, where they fail.
test: install
	scripts/postgres.sh install || echo "warning: no PostgreSQL server: its tests will be skipped"
	scripts/chromium.sh install || echo "warning: no chromium: the browser tests will be skipped"
	$(BIN)/python -m pytest -q
	$(MAKE) test-rules

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The Prometheus alerting rules: syntax check and unit tests. promtool is $(PROMTOOL) when set,
# else the one on PATH, else $(BIN)/promtool taken from Debian's package `prometheus` without
# installing it (scripts/promtool.sh): the package would run a Prometheus server on :9090,
# loopserve's default metrics port.
test-rules:
	@promtool="$(PROMTOOL)"; \
	if [ -z "$$promtool" ]; then promtool=$$(scripts/promtool.sh $(BIN)) || exit 1; fi; \
	set -x; \
	"$$promtool" check rules $(RULES_DIR)/rules.yml && \
	"$$promtool" test rules $(RULES_DIR)/rules_test.yml

lint: install
	$(BIN)/ruff check service tests bench scripts
	$(BIN)/ruff format --check service tests bench scripts
	$(BIN)/mypy

protos: install
	$(BIN)/python -m service.api.codegen

bench: install
	$(BIN)/python bench/serving.py
