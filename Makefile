# Entry points: `make demo` and `make test` (see README). Everything they need is
# installed by `make install`, which is a fast no-op once done.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp is named after pyproject.toml's content, not its mtime: a fresh clone (new
# mtimes) with an up-to-date venv stays a no-op, and any dependency change reinstalls.
PYPROJECT_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(PYPROJECT_HASH)

.PHONY: install system-deps venv kafka-jars web-deps snippet lint unit integration test demo bench bench-deps

install: system-deps venv kafka-jars web-deps

system-deps:
	bash scripts/install-system-deps.sh

venv: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

kafka-jars: venv
	$(BIN)/python -m expmon.local.kafka fetch

# The page snippet's npm packages (web-vitals, esbuild), pinned by web/package-lock.json.
WEB_STAMP := web/node_modules/.installed-$(shell sha256sum web/package-lock.json | cut -c1-16)

web-deps: $(WEB_STAMP)

$(WEB_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# Rebuild the committed bundle web/dist/expmon-snippet.js from web/src (commit the result:
# tests/unit/web/test_snippet.py fails when they differ).
snippet: web-deps
	cd web && npm run -s build

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: venv
	$(BIN)/python -m pytest tests/unit -n auto

integration: install
	$(BIN)/python -m pytest tests/integration

# The unit tests (pure logic, no broker) on every core, then the integration tests one at
# a time (one session-wide Kafka, real worker processes: they would fight for the cores).
# Any non-zero exit fails it, pytest's 5 (nothing collected) too.
test: install lint
	$(BIN)/python -m pytest tests/unit -n auto
	$(BIN)/python -m pytest tests/integration

demo: install
	$(BIN)/expmon demo

# The bench's peers: the `bench` extra (confluent-kafka, Bytewax) in the project's venv, and
# Quix Streams in a venv of its own (its pins exclude the project's pydantic).
QUIX_VENV := .venv-quix
QUIX_REQUIREMENTS := expmon/bench/peers/quix-requirements.txt
BENCH_STAMP := $(VENV)/.bench-$(PYPROJECT_HASH)
QUIX_STAMP := $(QUIX_VENV)/.installed-$(shell sha256sum $(QUIX_REQUIREMENTS) | cut -c1-16)

bench-deps: $(BENCH_STAMP) $(QUIX_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	rm -f $(VENV)/.bench-*
	touch $@

$(QUIX_STAMP): $(QUIX_REQUIREMENTS)
	test -x $(QUIX_VENV)/bin/python || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(QUIX_REQUIREMENTS)
	rm -f $(QUIX_VENV)/.installed-*
	touch $@

bench: install bench-deps
	$(BIN)/expmon bench
