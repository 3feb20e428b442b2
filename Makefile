# Set-up and everyday commands. `make serve` and `make test` are the two the README promises.
SHELL := /bin/bash
.DEFAULT_GOAL := serve

# The Python versions loopserve runs on (pyproject.toml's requires-python agrees), in order of
# preference: those that run every drift detector first, newest first, then 3.13, which lacks the
# online MMD and LSDD detectors (alibi-detect 0.11.4 does not install there, see pyproject.toml).
# PY=X.Y picks one, PYTHON=/path/to/python names an interpreter; by default the version .venv was
# made with, or for a new one the first found (scripts/pick-python.sh).
SUPPORTED_PYTHONS := 3.12 3.11 3.13
PY ?=
PYTHON ?=
# A version chosen with PY gets its own environment, so that versions can be tested side by side.
VENV ?= $(if $(PY),.venv-$(PY),.venv)
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
MODEL ?= support-intents
SERVE_ARGS ?=
PROMTOOL ?=
RULES_DIR := deploy/prometheus

# "X.Y INTERPRETER", or nothing when no supported Python fits (the script says why). Computed
# once, when a recipe first needs it, so that targets without Python never run it.
PICKED = $(eval PICKED := $(shell scripts/pick-python.sh '$(VENV)' '$(PY)' '$(PYTHON)' $(SUPPORTED_PYTHONS)))$(PICKED)

# Runs before any install step: a missing or unsupported Python stops make within seconds.
python:
	@$(if $(PICKED),echo "Python $(word 1,$(PICKED)) ($(word 2,$(PICKED))) in $(VENV)",exit 1)

# What serving and building a model need. torch first (scripts/install-torch.sh): the CUDA build
# only where a GPU is visible, otherwise the CPU build, so that no machine without a GPU downloads
# the CUDA libraries. alibi-detect without its declared dependencies (see
# scripts/requirements-no-deps.txt; skipped on Python 3.13), then the project;
# --no-warn-conflicts: pip would otherwise list the alibi-detect dependencies left out on purpose.
$(VENV)/.installed-serve: pyproject.toml scripts/install-torch.sh scripts/requirements-no-deps.txt | python
	[ -x $(BIN)/python ] || $(word 2,$(PICKED)) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	TORCH_VERSION=$(TORCH_VERSION) scripts/install-torch.sh $(BIN)/pip
	$(BIN)/pip install --quiet --no-deps -r scripts/requirements-no-deps.txt
	$(BIN)/pip install --quiet --no-warn-conflicts -e .
	touch $@

# The dev extra (test, lint and codegen tools) on top, for the targets that need it.
$(VENV)/.installed-dev: $(VENV)/.installed-serve
	$(BIN)/pip install --quiet --no-warn-conflicts -e '.[dev]'
	touch $@

.PHONY: python install install-dev serve test test-fast test-rules lint protos bench
install: $(VENV)/.installed-serve
install-dev: $(VENV)/.installed-dev

serve: install
	$(BIN)/loopserve init $(MODEL) --if-missing
	exec $(BIN)/loopserve serve --model $(MODEL) $(SERVE_ARGS)

# PostgreSQL, and chromium for the console's browser tests: installed from Debian's packages
# where we may (root, or sudo for chromium); elsewhere their tests are skipped with the reason,
# except under CI=true, where they fail.
test: install-dev
	scripts/postgres.sh install || echo "warning: no PostgreSQL server: its tests will be skipped"
	scripts/chromium.sh install || echo "warning: no chromium: the browser tests will be skipped"
	$(BIN)/python -m pytest -q
	$(MAKE) test-rules

test-fast: install-dev
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

lint: install-dev
	$(BIN)/ruff check service tests bench scripts
	$(BIN)/ruff format --check service tests bench scripts
	$(BIN)/mypy

protos: install-dev
	$(BIN)/python -m service.api.codegen

bench: install-dev
	$(BIN)/python bench/serving.py
