# Each target bootstraps .venv itself: a fresh clone needs only Python 3.11+, pip and gcc.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# pytest's workers in `make test` (pytest-xdist). The suite mostly waits (stacks starting,
# sockets, sleeps), so more workers than CI's two cores overlap the waits; more than three
# leave too little CPU for the tests that time answers. tests/support/parallel.py says
# how the tests are shared out. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3

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
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

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
