# Trainport's two front-door commands are `make demo` and `make test`; the rest are parts of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: demo test test-fast install install-test services lint typecheck typecheck-tests imports unit dashboard-unit serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The demo's example trains with PyTorch. Pinned here, for development and CI only, to the CPU
# build (an unpinned torch pulls a multi-GB CUDA build); users' extras keep a normal range.
TORCH  := torch==2.13.0

# Reinstall only when the dependency lists change.
$(VENV)/.installed: $(BIN)/python pyproject.toml sdk/pyproject.toml
	$(PIP) install -q -e . -e './sdk[cli]' '$(TORCH)'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## demo: install, start the embedded platform, train the lm recipe on the stdlib's source, stop
demo: install
	$(BIN)/python scripts/demo.py

## test: install test dependencies, check services, lint, type-check (the code strictly, then the
## tests), layer contracts, whole suite
test: install-test services lint typecheck typecheck-tests imports dashboard-unit unit

services:
	@bash scripts/services.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy api core workers dashboard sdk/trainport

# The tests under a non-strict mypy (mypy-tests.ini): every call checked, no stale ignore.
typecheck-tests:
	$(BIN)/mypy --config-file mypy-tests.ini tests

imports:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest -q

## test-fast: the tests that need no PostgreSQL, Redis or server (pure logic, SQLite): under a
## minute, for the edit-test loop; `make test` still runs everything
test-fast: install-test
	$(BIN)/pytest -q -m fast

# The dashboard's own logic (feed merging, URL filters, formatting) under node's test runner.
dashboard-unit:
	node --test dashboard/tests/

## serve: the embedded platform (API, worker, beat, relay) on http://127.0.0.1:8000, data in
## ./.trainport; Ctrl-C stops it all
serve: install
	$(BIN)/trainport server --host 127.0.0.1 --port 8000

## bench: seed 100k and 1M runs into trainport_bench and load the API with wrk (see bench/README.md)
bench: install-test services
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null || \
		{ echo "bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench.api_bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .trainport .pytest_cache .mypy_cache .ruff_cache .hypothesis
