# Developer shortcuts. CI runs .ci/run, which uses the same commands.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help venv test lint typecheck check demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

venv: ## create .venv with the package (editable) and the test tools
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[test]'

test: venv ## the whole test suite (the README's test command)
	$(PY) -m pytest

lint: venv ## ruff check and format check
	$(VENV)/bin/ruff check connector tests bench
	$(VENV)/bin/ruff format --check connector tests bench

typecheck: venv ## strict mypy on connector/
	$(VENV)/bin/mypy

check: test lint typecheck ## everything CI checks

demo: venv ## the demo on embedded broker, Redis and sandbox
	$(VENV)/bin/taobao-connector demo

bench: venv ## the benchmark scripts (a few minutes)
	$(PY) bench/sandbox_throughput.py --seconds 5 --connections 16
	$(PY) bench/codec_throughput.py
	$(PY) bench/ledger_throughput.py --events 50000
	$(PY) bench/pipeline_throughput.py --events 20000 --rate 500 --seconds 8
	$(PY) bench/steady_latency.py --seconds 30
	$(PY) bench/ceiling.py --events 20000 --pairs 3

clean: ## remove caches (not .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
