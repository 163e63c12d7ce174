# Each target bootstraps .venv itself: a fresh clone needs only Python 3.11+, pip and gcc.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip<26.3'  # chalice 1.x requires pip<26.3
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)  ## run the whole system on this machine (Ctrl-C stops it)
	$(BIN)/order-engine up

test: lint typecheck  ## lint, type-check and run every test
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)  ## the fast tests only (no database, no sockets)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)  ## drive orders through a running stack and print figures
	$(BIN)/order-engine bench

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
