# Two commands do all the set-up on a fresh machine:
#   make run    create the virtual environment, install Vigil, and run it on ./inbox (embedded default)
#   make test   create the virtual environment, install Vigil with its dev tools, and run every check
PYTHON ?= python3
VENV ?= .venv
WATCH ?= inbox
MODEL ?=
BIN := $(VENV)/bin
# `make run` installs what running needs; the checks install the dev tools on top. pip shows its progress
# (the first install downloads torch: about 1 GB for the CPU build, several GB for the CUDA one).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-dev
# Without an NVIDIA GPU, torch's CPU build comes from here when it answers (PyPI's is the CUDA build).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# torch and torchvision as pyproject.toml requires them (one place for their versions).
TORCH_REQS = $(shell $(PYTHON) -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); \
	print(" ".join(repr(r) for r in d["project"]["dependencies"] if r.startswith(("torch>", "torchvision>"))))')

.PHONY: run test tools lint typecheck pytest bench-smoke bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	@if command -v nvidia-smi >/dev/null 2>&1 || [ -e /proc/driver/nvidia ]; then \
		echo "== NVIDIA GPU found: torch's CUDA build (from PyPI)"; \
	elif $(BIN)/python -c 'import torch' >/dev/null 2>&1; then \
		echo "== torch is installed already"; \
	else \
		echo "== no NVIDIA GPU: torch's CPU build from $(TORCH_CPU_INDEX)"; \
		$(BIN)/python -m pip install --retries 1 --timeout 20 $(TORCH_REQS) --index-url $(TORCH_CPU_INDEX) \
		|| echo "== $(TORCH_CPU_INDEX) did not serve it: torch comes from PyPI (its CUDA build, which also runs on a CPU)"; \
	fi
	@echo "== installing Vigil and what it needs to run"
	$(BIN)/python -m pip install -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	@echo "== installing the development tools (tests, linters)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

run: $(RUN_STAMP)
	mkdir -p $(WATCH)
	$(BIN)/vigil run --watch $(WATCH) $(if $(MODEL),--model $(MODEL))

lint: $(STAMP)
	$(BIN)/ruff check vigil watcher workers tests bench migrations
	$(BIN)/ruff format --check vigil watcher workers tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	VIGIL_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -m "not bench"

# Every runnable bench/*.py with --quick (seconds each, measures nothing): a benchmark that stops running, or a
# new one without a smoke mode, fails the build (tests/test_bench_smoke.py).
bench-smoke: $(STAMP)
	VIGIL_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -m bench -v -s tests/test_bench_smoke.py

# Debian's packages the tests need, installed when missing (root and apt-get; otherwise a note).
tools:
	@# Debian's packages the tests drive, as COMMAND:PACKAGE: docker-compose validates docker-compose.yml;
	@# Chromium drives the review page's browser tests (Playwright's own download is not used); rsync and
	@# curl are real uploaders; promtool (in the prometheus package, which also brings a server that only
	@# starts where systemd runs) checks each /metrics; nftables makes the network-fault suite's partitions.
	@for pair in docker-compose:docker-compose chromium:chromium rsync:rsync curl:curl promtool:prometheus \
		nft:nftables; do tool=$${pair%%:*}; pkg=$${pair#*:}; command -v $$tool >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get install -y -qq $$pkg >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$pkg >/dev/null 2>&1; }; }; } \
		|| echo "note: $$tool (Debian's $$pkg) is not installed and could not be; the tests that drive it fail"; done

test: tools lint typecheck pytest bench-smoke

bench: $(STAMP)
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
