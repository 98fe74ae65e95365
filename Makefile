# `make demo` and `make test` do all set-up on a fresh machine: a .venv with the pinned
# dependencies (torch first, so nothing drags in a multi-GB CUDA build), then the job.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/avatar-cam demo --frames 300 --out out/demo.mp4

lint: $(STAMP)
	$(BIN)/ruff check avatar_cam tests benchmarks
	$(BIN)/mypy

# The browser tests need Debian's chromium (headless); without it they skip, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
	  || echo "chromium not installed (apt-get install chromium): browser tests will be skipped"

test: lint browser
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
