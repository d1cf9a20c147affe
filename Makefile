# Two commands do all the set-up on a fresh machine:
#   make run    create the virtual environment, install Vigil, and run it on ./inbox (embedded default)
#   make test   create the virtual environment, install Vigil with its dev tools, and run every check
PYTHON ?= python3
VENV ?= .venv
WATCH ?= inbox
MODEL ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test tools lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p $(WATCH)
	$(BIN)/vigil run --watch $(WATCH) $(if $(MODEL),--model $(MODEL))

lint: $(STAMP)
	$(BIN)/ruff check vigil watcher workers recorder tests bench migrations
	$(BIN)/ruff format --check vigil watcher workers recorder tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	VIGIL_REQUIRE_SERVICES=1 $(BIN)/python -m pytest

# docker-compose (Debian's package) validates docker-compose.yml in the tests; Chromium drives the review
# page's browser tests. Both are installed when missing.
RTSP_INSTALL := apt-get install -y -qq gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-ugly \
	gstreamer1.0-plugins-bad gstreamer1.0-libav

tools:
	@command -v docker-compose >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get install -y -qq docker-compose >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq docker-compose >/dev/null 2>&1; }; }; } \
		|| echo "note: docker-compose is not installed and could not be; the compose test needs it"
	@# Chromium (Debian's) for the review page's browser tests; Playwright's own download is not used.
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get install -y -qq chromium >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } \
		|| echo "note: chromium is not installed and could not be; the review page's browser tests need it"
	@# rsync and curl (Debian's) are real uploaders in the watcher's uploader tests.
	@for tool in rsync curl; do command -v $$tool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null 2>&1 && { apt-get install -y -qq $$tool >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$tool >/dev/null 2>&1; }; }; } \
		|| echo "note: $$tool is not installed and could not be; the uploader tests need it"; done
	@# GStreamer's RTSP server (under the system Python, with gi) and x264enc/x265enc: the recorder's camera.
	@/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { $(RTSP_INSTALL) >/dev/null 2>&1 \
		     || { apt-get update -qq >/dev/null 2>&1 && $(RTSP_INSTALL) >/dev/null 2>&1; }; }; } \
		|| echo "note: GStreamer's RTSP server is not installed and could not be; the recorder tests need it"

test: tools lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
