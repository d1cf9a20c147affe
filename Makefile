# Two commands do all the set-up on a fresh machine:
#   make run    create the virtual environment, install Vigil, and run it on ./inbox (embedded default)
#   make test   create the virtual environment, install Vigil with its dev tools, and run every check
PYTHON ?= python3
VENV ?= .venv
WATCH ?= inbox
MODEL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p $(WATCH)
	$(BIN)/vigil run --watch $(WATCH) $(if $(MODEL),--model $(MODEL))

lint: $(STAMP)
	$(BIN)/ruff check vigil watcher workers tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	VIGIL_REQUIRE_SERVICES=1 $(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/scoring.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
