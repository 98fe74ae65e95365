# `make demo` and `make test` do all set-up on a fresh machine: a .venv with the pinned
# dependencies (torch first, so nothing drags in a multi-GB CUDA build), then the job.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

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

test: lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
