# g2l: `make demo` runs the whole job on an embedded default; `make test` runs the tests.
# Both create or reuse .venv and are idempotent: a second run skips what is done.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.g2l-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests and the demo use (the Prometheus Pushgateway; chromium renders report.html
# in the headless-browser test).
system-deps:
	@command -v prometheus-pushgateway >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus-pushgateway; }
	@command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

install: $(STAMP) system-deps

demo: install
	$(BIN)/python -m g2l demo --out demo-output

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check g2l components pipelines tests benchmarks
	$(BIN)/mypy g2l

clean:
	rm -rf demo-output .pytest_cache
