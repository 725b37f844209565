# Trainport's two front-door commands are `make demo` and `make test`; the rest are parts of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: demo test install install-test services lint typecheck imports unit serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Reinstall only when the dependency lists change.
$(VENV)/.installed: $(BIN)/python pyproject.toml sdk/pyproject.toml
	$(PIP) install -q -e . -e './sdk[cli]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## demo: install, start the embedded platform, bootstrap an org and key, submit and list a run
demo: install
	$(BIN)/python scripts/demo.py

## test: install test dependencies, check services, lint, type-check, layer contracts, whole suite
test: install-test services lint typecheck imports unit

services:
	@bash scripts/services.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy api core workers sdk/trainport

imports:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest -q

## serve: the embedded platform on http://127.0.0.1:8000 (SQLite under ./.trainport)
serve: install
	$(BIN)/python -m api.admin migrate
	$(BIN)/uvicorn api.main:app --host 127.0.0.1 --port 8000

bench: install-test services
	$(BIN)/python bench/api_bench.py

clean:
	rm -rf $(VENV) .trainport .pytest_cache .mypy_cache .ruff_cache .hypothesis
