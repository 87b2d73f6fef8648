# fleetscope: two commands for users.
#   make run   set up a virtual environment and start `fleetscope serve`
#   make test  set up everything the tests need and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint bench bench-store clean system-deps test-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/fleetscope serve $(ARGS)

# System packages the tests talk to for real (chromium for the dashboard tests).
system-deps:
	@bash scripts/system-deps.sh

test: $(STAMP) system-deps
	@$(BIN)/python -c "import libvirt" 2>/dev/null || $(BIN)/pip install -q -e '.[test,vm]'
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/agent_overhead.py
	$(BIN)/python bench/api_latency.py
	$(BIN)/python bench/dashboard.py

# The history store: 30 days of per-second data for 20 instrumentations, compared with a
# Prometheus TSDB built by promtool (installs Debian's prometheus package when missing). Slow.
bench-store: $(STAMP)
	$(BIN)/python bench/store.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
