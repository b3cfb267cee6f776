# Turnout: `make demo` runs the whole flow once, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test test-unit test-integration dev install clean bench-route bench-stream

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Turnout with its test tools

demo: $(STAMP) ## start the embedded stack, route the sample prompts, print decisions and the report
	$(BIN)/turnout demo

dev: $(STAMP) ## run the embedded stack until Ctrl-C
	$(BIN)/turnout dev

test: $(STAMP) ## run every test (unit, then integration on embedded Tansu + chDB)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## run the unit tests only
	$(BIN)/python -m pytest -m "not integration"

test-integration: $(STAMP) ## run the integration tests only
	$(BIN)/python -m pytest -m integration

BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS  ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench-route: $(BENCH_STAMP) ## benchmark the routing decision alone beside LiteLLM's Router (p50/p99 µs, decisions/s)
	$(BIN)/python bench/bench_route.py $(BENCH_ARGS)

bench-stream: $(BENCH_STAMP) ## benchmark one router process on embedded Kafka beside a bare aiokafka pass-through (requests/s)
	$(BIN)/python bench/bench_stream.py $(BENCH_ARGS)

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .turnout .pytest_cache
